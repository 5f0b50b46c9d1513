"""target_coperniq."""
