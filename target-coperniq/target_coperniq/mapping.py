"""Pure QuickBooks (Merge) -> Coperniq mapping: no I/O, so every rule is unit-testable.

Coperniq invoices need a `catalogItemId` on every line and accept each catalog item only once per
invoice, with integer quantities. QuickBooks lines are therefore grouped by catalog item; a group
that cannot be expressed as `integer quantity x unit price` becomes one line of quantity 1 priced at
the group total. Tax and discounts (which QuickBooks keeps outside the lines) become one adjustment
line, so the Coperniq invoice total equals the QuickBooks total.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sync_ledger import to_decimal, to_money
from sync_ledger.rows import REVERSE_MARKER_PREFIX, REVERSE_PAYMENT_NOTE

#: Marker put in every invoice description the reverse leg writes: the natural key for crash recovery.
MARKER_PREFIX = REVERSE_MARKER_PREFIX  # the forward leg knows our records by it (sync_ledger.rows)
VOID_PREFIX = "[VOIDED IN QUICKBOOKS] "
DELETED_PREFIX = "[DELETED IN QUICKBOOKS] "

#: Merge invoice status -> Coperniq invoice status (Coperniq has no VOID; see void_policy).
STATUS_MAP = {
    "DRAFT": "DRAFT",
    "SUBMITTED": "SENT",
    "OPEN": "SENT",
    "PARTIALLY_PAID": "PARTIALLY_PAID",
    "PAID": "PAID",
}
#: Coperniq only accepts these on create; PAID / PARTIALLY_PAID follow from the payments we add.
CREATE_STATUSES = {"DRAFT", "SENT"}


def as_json_number(value: Decimal) -> int | Decimal:
    """Coperniq takes JSON numbers in dollars: whole dollars as an int, the rest as the Decimal, which
    sync_ledger.http sends as the JSON number it is (and which fingerprints like the float sent before)."""
    return int(value) if value == value.to_integral_value() else value


def iso(value: Any) -> str | None:
    """ISO-8601 UTC with Z; tolerant of strings and the datetimes the SDK parses records into."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00Z"
    return str(value)


def marker(merge_id: str) -> str:
    return f"[{MARKER_PREFIX}{merge_id}]"


def invoice_description(invoice: dict, *, prefix: str = "") -> str:
    """Human text plus the marker: `QuickBooks invoice #1043 - memo [qbo-merge:<uuid>]`."""
    number = invoice.get("number") or invoice.get("remote_id") or ""
    text = f"QuickBooks invoice #{number}" if number else "QuickBooks invoice"
    memo = (invoice.get("memo") or "").strip()
    if memo:
        text = f"{text} - {memo[:300]}"
    return f"{prefix}{text} {marker(invoice['id'])}"


@dataclass
class CatalogRef:
    """Which Coperniq catalog item a QuickBooks line maps to (resolved by the caller)."""

    catalog_item_id: int
    unit_cost: Decimal = Decimal(0)


@dataclass
class _Group:
    ref: CatalogRef
    lines: list[tuple[Decimal, Decimal, Decimal]] = field(default_factory=list)  # (qty, unit, total)
    descriptions: list[str] = field(default_factory=list)

    def to_line(self) -> dict[str, Any]:
        units = {to_money(unit) for _, unit, _ in self.lines}  # what Coperniq is sent and multiplies
        integral = all(qty == qty.to_integral_value() and qty > 0 for qty, _, _ in self.lines)
        # Coperniq multiplies qty by the unit price it holds (cents): QuickBooks' 3 x 33.333 = 100.00 is 99.99 there
        consistent = all(to_money(qty * to_money(unit)) == to_money(total) for qty, unit, total in self.lines)
        total = sum((t for _, _, t in self.lines), Decimal(0))
        if len(units) == 1 and integral and consistent:
            quantity = int(sum(q for q, _, _ in self.lines))
            unit_price = next(iter(units))
        else:
            quantity, unit_price = 1, total
        description = "; ".join(dict.fromkeys(d for d in self.descriptions if d))[:1000] or None
        line: dict[str, Any] = {
            "catalogItemId": self.ref.catalog_item_id,
            "quantity": quantity,
            "unitCost": as_json_number(to_money(self.ref.unit_cost)),
            "unitPrice": as_json_number(to_money(unit_price)),
        }
        if description:
            line["description"] = description
        return line


def build_line_items(
    invoice: dict,
    resolve_line: Callable[[dict], CatalogRef],
    adjustment: Callable[[], CatalogRef],
) -> list[dict[str, Any]]:
    """Coperniq `lineItems` for a Merge invoice (one line per catalog item, totals preserved)."""
    groups: dict[int, _Group] = {}
    lines_total = Decimal(0)
    for line in invoice.get("line_items") or []:
        if not isinstance(line, dict) or line.get("remote_was_deleted"):
            continue
        qty = to_decimal(line.get("quantity"))
        unit = to_decimal(line.get("unit_price"))
        total = to_decimal(line.get("total_amount"))
        if total is None:
            total = (qty if qty is not None else Decimal(1)) * (unit or Decimal(0))
        if qty is None or qty == 0:
            qty = Decimal(1)
        if unit is None:
            unit = total / qty
        ref = resolve_line(line)
        group = groups.setdefault(ref.catalog_item_id, _Group(ref))
        group.lines.append((qty, unit, total))
        group.descriptions.append((line.get("description") or "").strip())
        lines_total += total
    invoice_total = to_decimal(invoice.get("total_amount"))
    difference = to_money(invoice_total - lines_total) if invoice_total is not None else Decimal(0)
    if difference != 0 or not groups:
        ref = adjustment()
        group = groups.setdefault(ref.catalog_item_id, _Group(ref))
        group.lines.append((Decimal(1), difference, difference))
        group.descriptions.append("Tax/discount adjustment from QuickBooks" if groups else "QuickBooks invoice total")
    return [g.to_line() for g in groups.values()]


def coperniq_status(merge_status: str | None) -> str:
    return STATUS_MAP.get((merge_status or "").upper(), "SENT")


def invoice_payload(invoice: dict, record_id: int, line_items: list[dict[str, Any]]) -> dict[str, Any]:
    """What the reverse leg wants the Coperniq invoice to look like (create and update share it)."""
    payload: dict[str, Any] = {
        "recordId": record_id,
        "calculationMethod": "LINE_ITEMS",
        "status": coperniq_status(invoice.get("status")),
        "issueDate": iso(invoice.get("issue_date") or invoice.get("created_at")),
        "description": invoice_description(invoice),
        "lineItems": line_items,
    }
    if due := iso(invoice.get("due_date")):
        payload["dueDate"] = due
    return payload


def create_body(payload: dict[str, Any]) -> dict[str, Any]:
    """POST /invoices: only DRAFT/SENT can be set; PAID and PARTIALLY_PAID follow from payments."""
    body = dict(payload)
    if body["status"] not in CREATE_STATUSES:
        body["status"] = "SENT"
    if body["status"] == "DRAFT":
        body.pop("issueDate", None)
    return body


def update_body(payload: dict[str, Any]) -> dict[str, Any]:
    """PATCH /invoices/{id}: recordId/calculationMethod/issueDate are not updatable."""
    return {k: v for k, v in payload.items() if k in ("status", "lineItems", "dueDate", "description")}


def invoice_applications(payment: dict) -> list[tuple[str, Decimal, str | None]]:
    """(merge invoice id, amount, line id) for each positive application of a payment to an invoice."""
    lines = [
        line
        for line in payment.get("applied_to_lines") or []
        if isinstance(line, dict)
        and line.get("related_object_id")
        and (line.get("related_object_type") or "INVOICE").upper() == "INVOICE"
    ]
    out: list[tuple[str, Decimal, str | None]] = []
    for line in lines:
        amount = to_decimal(line.get("applied_amount"))
        if amount is None and len(lines) == 1:
            amount = to_decimal(payment.get("total_amount"))
        if amount is not None and amount > 0:
            out.append((str(line["related_object_id"]), to_money(amount), line.get("id")))
    return out


def payment_source_id(payment_id: str, invoice_id: str, applications: Iterable[tuple[str, Any, Any]]) -> str:
    """Ledger source id of one Coperniq payment: the Merge payment id, or `<payment>:<invoice>` when the
    QuickBooks payment is split over several invoices (Coperniq payments belong to one invoice)."""
    invoices = {inv for inv, _, _ in applications}
    return payment_id if len(invoices) <= 1 else f"{payment_id}:{invoice_id}"


def payment_body(payment: dict, amount: Decimal, reference: str, method: str) -> dict[str, Any]:
    """POST /invoices/{id}/payments. `paymentReference` carries the ledger key (natural key for recovery)."""
    number = payment.get("remote_id") or payment["id"]
    return {
        "amount": as_json_number(amount),
        "paymentMethod": method,
        "paymentDate": iso(payment.get("transaction_date") or payment.get("created_at")),
        "paymentReference": reference,
        "notes": f"{REVERSE_PAYMENT_NOTE} {number}",
    }
