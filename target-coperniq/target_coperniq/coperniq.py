"""The few Coperniq calls the reverse leg makes, on top of sync_ledger.ApiClient (rate limit, retries, redaction)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, cast

from sync_ledger import ApiClient, to_money
from sync_ledger.http import send_checked

log = logging.getLogger(__name__)

PAGE_SIZE = 100
#: Merge item type -> Coperniq catalog item type; categories are the generic OTHER of each type.
CATALOG_TYPES = {"SERVICE": "SERVICE", "INVENTORY": "PRODUCT", "NON_INVENTORY": "PRODUCT"}


def _fold(name: str) -> str:
    return " ".join(name.split()).casefold()


class CoperniqApi:
    """Invoice, payment and catalog-item calls; catalog items are cached by name for the run."""

    def __init__(self, client: ApiClient, *, create_catalog_items: bool = True) -> None:
        self.client = client
        self.create_catalog_items = create_catalog_items
        self._catalog: dict[str, int] | None = None

    # --- catalog --------------------------------------------------------------------------------
    def _load_catalog(self) -> dict[str, int]:
        if self._catalog is None:
            catalog: dict[str, int] = {}
            for item in self._pages("/catalog-items"):
                if not item.get("isArchived") and item.get("name"):
                    catalog.setdefault(_fold(item["name"]), int(item["id"]))
            self._catalog = catalog
            log.info("Loaded %d Coperniq catalog items", len(catalog))
        return self._catalog

    def find_catalog_item(self, name: str) -> int | None:
        return self._load_catalog().get(_fold(name))

    def catalog_item(self, name: str, *, merge_type: str | None = None, price: Any = 0, cost: Any = 0) -> int:
        """Id of the catalog item called `name` (case/space-insensitive), created when missing."""
        found = self.find_catalog_item(name)
        if found is not None:
            return found
        if not self.create_catalog_items:
            raise LookupError(f"no Coperniq catalog item named {name!r} and create_catalog_items is off")
        kind = CATALOG_TYPES.get((merge_type or "").upper(), "SERVICE")
        created = self._create_once(
            "/catalog-items",
            {
                "name": name[:200],
                "type": kind,
                "category": "OTHER",
                "cost": to_money(cost or 0),  # dollars, sent as the JSON number (sync_ledger.http)
                "price": to_money(price or 0),
                "description": "Created by target-coperniq for a QuickBooks item",
            },
            find=lambda: self._refind_catalog_item(name),
        )
        item_id = int(created["id"])
        self._load_catalog()[_fold(name)] = item_id
        log.info("Created Coperniq catalog item %s for QuickBooks item %r", item_id, name)
        return item_id

    def _refind_catalog_item(self, name: str) -> dict[str, Any] | None:
        self._catalog = None
        found = self.find_catalog_item(name)
        return {"id": found} if found is not None else None

    # --- creates without an idempotency key -------------------------------------------------------
    def _create_once(
        self, path: str, body: dict[str, Any], *, find: Callable[[], dict[str, Any] | None]
    ) -> dict[str, Any]:
        """POST that never creates twice: Coperniq has no idempotency key, and after a 5xx or a lost connection
        the record may exist anyway, so it is looked up by its natural key before the POST is sent again."""
        return send_checked(
            lambda: self.client.post(path, json=body, retry_ambiguous=False),
            find,
            tries=self.client.max_retries + 1,
            backoff=self.client.backoff,
        )

    # --- invoices -------------------------------------------------------------------------------
    def create_invoice(self, body: dict[str, Any], *, record_id: int, record_kind: str, marker: str) -> dict[str, Any]:
        return self._create_once("/invoices", body, find=lambda: self.find_invoice(record_id, record_kind, marker))

    def update_invoice(self, invoice_id: int | str, body: dict[str, Any]) -> dict[str, Any]:
        return cast("dict[str, Any]", self.client.patch(f"/invoices/{invoice_id}", json=body))

    def get_invoice(self, invoice_id: int | str) -> dict[str, Any]:
        return cast("dict[str, Any]", self.client.get(f"/invoices/{invoice_id}"))

    def delete_invoice(self, invoice_id: int | str) -> None:
        self.client.delete(f"/invoices/{invoice_id}")

    def find_invoice(self, record_id: int, record_kind: str, marker: str) -> dict[str, Any] | None:
        """Crash recovery: the invoice on this project/account whose description carries `marker`."""
        base = f"/projects/{record_id}/invoices" if record_kind == "project" else f"/accounts/{record_id}/invoices"
        for invoice in self._pages(base):
            if marker in (invoice.get("description") or ""):
                return invoice
        return None

    # --- payments -------------------------------------------------------------------------------
    def create_payment(self, invoice_id: int | str, body: dict[str, Any]) -> dict[str, Any]:
        """`body["paymentReference"]` is the natural key used to find a payment whose response was lost."""
        return self._create_once(
            f"/invoices/{invoice_id}/payments",
            body,
            find=lambda: self.find_payment(invoice_id, body["paymentReference"]),
        )

    def payments(self, invoice_id: int | str) -> list[dict[str, Any]]:
        return list(self.client.get(f"/invoices/{invoice_id}/payments") or [])

    def find_payment(self, invoice_id: int | str, reference: str) -> dict[str, Any] | None:
        """Crash recovery: the payment on this invoice whose paymentReference is our ledger key."""
        return next((p for p in self.payments(invoice_id) if p.get("paymentReference") == reference), None)

    # --- paging ---------------------------------------------------------------------------------
    def _pages(self, path: str) -> Iterator[dict[str, Any]]:
        """Both Coperniq list shapes: bare arrays (stop on a short page) and {items, has_more}."""
        page = 1
        previous_first: Any = None
        while True:
            body = self.client.get(path, params={"page": page, "page_size": PAGE_SIZE})
            rows = body.get("items", []) if isinstance(body, dict) else (body or [])
            if rows and rows[0].get("id") == previous_first:
                return  # the endpoint ignores `page`: stop instead of looping
            yield from rows
            more = body.get("has_more") if isinstance(body, dict) else len(rows) >= PAGE_SIZE
            if not more or not rows:
                return
            previous_first = rows[0].get("id")
            page += 1
