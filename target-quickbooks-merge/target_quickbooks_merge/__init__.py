"""target_quickbooks_merge: Coperniq -> QuickBooks Online (through Merge) Singer target."""

from __future__ import annotations
