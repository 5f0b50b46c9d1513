"""`python -m target_quickbooks_merge`."""

from __future__ import annotations

from target_quickbooks_merge.target import TargetQuickbooksMerge

TargetQuickbooksMerge.cli()
