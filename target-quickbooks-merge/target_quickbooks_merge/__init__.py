"""target_quickbooks_merge."""
