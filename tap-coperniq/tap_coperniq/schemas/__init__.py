"""JSON schemas of the streams, generated from Coperniq's OpenAPI by scripts/build_schemas.py."""
