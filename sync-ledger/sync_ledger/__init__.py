"""sync_ledger."""
