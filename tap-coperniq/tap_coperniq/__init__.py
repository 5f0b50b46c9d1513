"""tap_coperniq."""
