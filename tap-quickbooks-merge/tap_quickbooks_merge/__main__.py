"""Allow `python -m tap_quickbooks_merge`."""

from __future__ import annotations

from tap_quickbooks_merge.tap import TapQuickbooksMerge

TapQuickbooksMerge.cli()
