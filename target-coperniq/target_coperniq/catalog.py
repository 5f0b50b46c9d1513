"""QuickBooks items -> Coperniq catalog items: every Coperniq invoice line must name a catalog item."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sync_ledger import Ledger, to_decimal
from sync_ledger.rows import Wait
from target_coperniq.context import SOURCE, Settings
from target_coperniq.coperniq import CoperniqApi
from target_coperniq.mapping import CatalogRef

ADJUSTMENT_ITEM_NAME = "QuickBooks adjustment"


class Catalog:
    """Maps a line's Merge item to the Coperniq catalog item of the same name; a dry run only finds, never creates."""

    def __init__(self, api: CoperniqApi, ledger: Ledger, settings: Settings) -> None:
        self.api = api
        self.ledger = ledger
        self.settings = settings

    def item(self, name: str, **kwargs: Any) -> int:
        if self.settings.dry_run:
            return self.api.find_catalog_item(name) or 0
        return self.api.catalog_item(name, **kwargs)

    def default_ref(self) -> CatalogRef:
        configured = self.settings.default_catalog_item
        if configured:
            return CatalogRef(int(configured))
        return CatalogRef(self.item(self.settings.default_catalog_item_name))

    def adjustment_ref(self) -> CatalogRef:
        """The item of the line that brings the Coperniq total to QuickBooks' (tax, discounts, no lines at all)."""
        return CatalogRef(self.item(ADJUSTMENT_ITEM_NAME))

    def line_ref(self, line: dict[str, Any], final: bool) -> CatalogRef:
        """Merge item -> Coperniq catalog item with the same name (created if missing); no item -> default."""
        item_id = line.get("item")
        if item_id:
            item = self.ledger.staged(SOURCE, "items", item_id)
            if item is None and not final:
                raise Wait(f"item {item_id} not received yet")
            if item and item.get("name"):
                cost = to_decimal(item.get("purchase_price")) or Decimal(0)
                return CatalogRef(
                    self.item(item["name"], merge_type=item.get("type"), price=item.get("unit_price"), cost=cost),
                    cost,
                )
        return self.default_ref()
