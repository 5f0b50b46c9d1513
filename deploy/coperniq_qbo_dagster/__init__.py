"""coperniq-quickbooks on Dagster: `dagster dev -m coperniq_qbo_dagster.definitions` (see docs/DEPLOY.md).

The definitions module reads the companies file when it is imported; this package's other modules do not.
"""
