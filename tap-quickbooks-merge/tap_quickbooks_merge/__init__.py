"""tap-quickbooks-merge: QuickBooks Online through the Merge Accounting API, as a Singer tap."""
