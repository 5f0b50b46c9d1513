"""Allow `python -m tap_coperniq`."""

from __future__ import annotations

from tap_coperniq.tap import TapCoperniq

TapCoperniq.cli()
