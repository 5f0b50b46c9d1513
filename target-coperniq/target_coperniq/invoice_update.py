"""Update a Coperniq invoice's lines so it ends up holding exactly the QuickBooks lines.

Whether `PATCH /invoices/{id}` replaces the line set or appends the lines that carry no `id` is not documented
(sandbox switch `invoice_patch_replaces_lines`). Sending the current line ids back makes both behave the same:
the current invoice is read first, each wanted line takes the id of a current line (same catalog item first,
then by position), and lines no longer wanted are left out. Under append semantics those stay, and Coperniq has
no way to delete an invoice line (quantity must be a positive integer), so they are set to price 0 (the amount
is right, payments cannot overpay) and the row fails with a reason asking for a manual fix. The result is
always read back and checked: a wrong amount fails the row rather than passing silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Protocol

from sync_ledger import to_decimal, to_money

REMOVED_DESCRIPTION = "Removed in QuickBooks (Coperniq kept this line; delete it by hand)"
#: Fields of a line Coperniq accepts back on PATCH (read responses add catalogItem, sectionName, ...).
_INPUT_FIELDS = ("id", "catalogItemId", "quantity", "unitCost", "unitPrice", "description")


class InvoiceUpdateError(Exception):
    """The invoice could not be brought to the QuickBooks lines; the message is the row's failure reason."""


class InvoiceCalls(Protocol):
    """The two Coperniq calls this needs (CoperniqApi implements them)."""

    def get_invoice(self, invoice_id: int | str) -> dict[str, Any]: ...

    def update_invoice(self, invoice_id: int | str, body: dict[str, Any]) -> dict[str, Any]: ...


def catalog_id(line: dict[str, Any]) -> int | None:
    raw = line.get("catalogItemId") or (line.get("catalogItem") or {}).get("id")
    return int(raw) if raw is not None else None


def line_key(line: dict[str, Any]) -> tuple[int | None, int, Decimal]:
    """What must match after the update: catalog item, quantity, unit price (to the cent)."""
    return catalog_id(line), int(line.get("quantity") or 0), to_money(to_decimal(line.get("unitPrice")) or 0)


def lines_total(lines: Iterable[dict[str, Any]]) -> Decimal:
    return to_money(sum((k[1] * k[2] for k in map(line_key, lines)), Decimal(0)))


def carry_ids(
    wanted: list[dict[str, Any]], current: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(wanted lines, each with the `id` of a current line where one is free; current lines left over)."""
    pool = [line for line in current if line.get("id") is not None]
    used: set[Any] = set()
    chosen: list[Any] = [None] * len(wanted)
    for i, line in enumerate(wanted):  # the same catalog item first: its line keeps its id
        match = next((c for c in pool if c["id"] not in used and catalog_id(c) == catalog_id(line)), None)
        if match is not None:
            chosen[i] = match["id"]
            used.add(match["id"])
    free = iter([c for c in pool if c["id"] not in used])
    for i in range(len(wanted)):  # then by position: a swapped item is updated in place, not appended
        if chosen[i] is None and (match := next(free, None)) is not None:
            chosen[i] = match["id"]
            used.add(match["id"])
    out = [{**line, "id": lid} if lid is not None else dict(line) for line, lid in zip(wanted, chosen, strict=True)]
    return out, [c for c in pool if c["id"] not in used]


def zeroed(line: dict[str, Any]) -> dict[str, Any]:
    """The closest Coperniq allows to removing a line: quantity 1 (0 is rejected) at price and cost 0."""
    return {
        "id": line["id"],
        "catalogItemId": catalog_id(line),
        "quantity": 1,
        "unitCost": 0,
        "unitPrice": 0,
        "description": REMOVED_DESCRIPTION,
    }


def _read_back(api: InvoiceCalls, invoice_id: int | str, response: Any) -> dict[str, Any]:
    """The invoice after a PATCH: its response when it carries lines and amount, otherwise a GET."""
    if isinstance(response, dict) and "lineItems" in response and "amount" in response:
        return response
    return api.get_invoice(invoice_id)


def _mismatch(
    invoice_id: int | str, invoice: dict[str, Any], wanted: list[dict[str, Any]], ignore: set[Any]
) -> str | None:
    expected = lines_total(wanted)
    amount = to_money(to_decimal(invoice.get("amount")) or 0)
    if amount != expected:
        return (
            f"Coperniq invoice {invoice_id} amount is {amount} after the update, expected {expected} "
            "(the QuickBooks lines); check its lines in Coperniq"
        )
    held = Counter(line_key(line) for line in invoice.get("lineItems") or [] if line.get("id") not in ignore)
    if held != Counter(map(line_key, wanted)):
        return (
            f"Coperniq invoice {invoice_id} holds other lines than QuickBooks after the update "
            f"({len(invoice.get('lineItems') or [])} lines, {len(wanted)} expected)"
        )
    return None


def _is_zero(line: dict[str, Any]) -> bool:
    return line_key(line)[2] == 0 and to_money(to_decimal(line.get("unitCost")) or 0) == 0


def _zero_leftovers(api: InvoiceCalls, invoice_id: int | str, kept: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Only the kept lines are sent (the API keeps what is not sent); one PATCH per catalog item repeat, since
    a catalog item may appear once per request. Returns the last response, None when nothing had to change."""
    todo = [line for line in kept if not _is_zero(line)]
    response = None
    while todo:
        batch: list[dict[str, Any]] = []
        rest: list[dict[str, Any]] = []
        seen: set[Any] = set()
        for line in todo:
            (rest if catalog_id(line) in seen else batch).append(line)
            seen.add(catalog_id(line))
        response = api.update_invoice(invoice_id, {"lineItems": [zeroed(line) for line in batch]})
        todo = rest
    return response


def update_invoice_lines(api: InvoiceCalls, invoice_id: int | str, body: dict[str, Any]) -> dict[str, Any]:
    """PATCH `body` so the invoice holds exactly `body["lineItems"]`; raises InvoiceUpdateError otherwise."""
    wanted = body.get("lineItems")
    if not wanted:
        return api.update_invoice(invoice_id, body)
    current = api.get_invoice(invoice_id)
    lines, leftovers = carry_ids(wanted, current.get("lineItems") or [])
    invoice = _read_back(api, invoice_id, api.update_invoice(invoice_id, {**body, "lineItems": lines}))
    leftover_ids = {line["id"] for line in leftovers}
    kept = [line for line in invoice.get("lineItems") or [] if line.get("id") in leftover_ids]
    if kept and (response := _zero_leftovers(api, invoice_id, kept)) is not None:
        invoice = _read_back(api, invoice_id, response)
    if problem := _mismatch(invoice_id, invoice, wanted, {line["id"] for line in kept}):
        raise InvoiceUpdateError(problem)
    if kept:
        ids = ", ".join(str(line["id"]) for line in kept)
        raise InvoiceUpdateError(
            f"{len(kept)} line(s) removed in QuickBooks could not be removed from Coperniq invoice {invoice_id}: "
            f"Coperniq keeps invoice lines a PATCH leaves out and has no way to delete one, so line(s) {ids} were "
            "set to price 0 (the amount matches QuickBooks); delete them in Coperniq by hand"
        )
    return invoice
