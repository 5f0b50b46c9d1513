"""Allow `python -m target_coperniq`."""

from __future__ import annotations

from target_coperniq.target import TargetCoperniq

TargetCoperniq.cli()
