"""tap_quickbooks_merge."""
