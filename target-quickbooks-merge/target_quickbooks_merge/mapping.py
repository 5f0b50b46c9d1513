"""Pure Coperniq -> Merge/QBO payload mapping and name rules (no I/O, so it is cheap to unit test)."""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from sync_ledger import fingerprint, money_text, to_decimal, to_money
from sync_ledger.triggers import normalize_name  # re-exported; one key, shared with the tap

QBO_NAME_MAX = 100  # QBO documents 500; older companies/the sandbox enforce 100, so stay safe
_SPACES = re.compile(r"\s+")
_FORBIDDEN = re.compile(r"[:\t\r\n]")  # QBO rejects these in DisplayName


def normalize_email(email: str | None) -> str:
    return (email or "").strip().casefold()


def sanitize_display_name(name: str) -> str:
    """QBO DisplayName: no colon/tab/newline (colon is its hierarchy separator), single spaces, <= 500 chars."""
    text = _FORBIDDEN.sub(" - ", str(name or ""))
    text = _SPACES.sub(" ", text).strip(" -")
    return text[:QBO_NAME_MAX].strip() or "Unnamed"


def with_suffix(base: str, suffix: str) -> str:
    """`base` plus a collision suffix within QuickBooks' length limit: the base is cut, never the suffix (a cut
    suffix would collide again, and would not be recognised as ours later)."""
    room = QBO_NAME_MAX - len(suffix) - 1
    return sanitize_display_name(f"{base[:room].rstrip()} {suffix}")


def name_candidates(base: str, key: str | int) -> Iterator[str]:
    """Deterministic DisplayName suffixes tried on a collision with an unrelated record."""
    yield base
    yield with_suffix(base, f"(#{key})")
    for n in range(2, 50):
        yield with_suffix(base, f"(#{key}-{n})")


class _SafeDict(dict):  # str.format_map that leaves unknown/None fields empty
    def __missing__(self, key: str) -> str:
        return ""


def render_name(template: str, **fields: Any) -> str:
    values = _SafeDict({k: ("" if v is None else v) for k, v in fields.items()})
    rendered = string.Formatter().vformat(template, (), values)
    rendered = rendered.replace("()", "").replace("( )", "")  # e.g. "{title} ({number})" with no number
    return sanitize_display_name(rendered)


def parse_address(full: str | None) -> dict[str, Any] | None:
    """Split Coperniq's one-line address ("123 Main St, Austin, TX 78701[, USA]") into Merge Address fields.

    Anything that does not look like "street, city, ST zip" is kept whole in street_1 rather than guessed.
    """
    if not full or not str(full).strip():
        return None
    parts = [p.strip() for p in str(full).split(",") if p.strip()]
    country = "US"
    if parts and parts[-1].upper() in {"USA", "US", "UNITED STATES", "UNITED STATES OF AMERICA"}:
        parts = parts[:-1]
    m = re.fullmatch(r"([A-Za-z]{2})\s+(\d{5}(?:-\d{4})?)", parts[-1]) if len(parts) >= 3 else None
    if m:
        return {
            "street_1": ", ".join(parts[:-2]),
            "city": parts[-2],
            "country_subdivision": m.group(1).upper(),
            "zip_code": m.group(2),
            "country": country,
        }
    return {"street_1": str(full).strip(), "country": country}


def first_address(value: Any) -> str | None:
    if isinstance(value, list):
        return next((str(v) for v in value if v), None)
    return str(value) if value else None


def customer_payload(account: Mapping[str, Any], display_name: str) -> dict[str, Any]:
    """Merge ContactRequest for a Coperniq account (client). Empty values are left out, never sent as blanks."""
    payload: dict[str, Any] = {"name": display_name, "is_customer": True, "is_supplier": False}
    if account.get("primaryEmail"):
        payload["email_address"] = str(account["primaryEmail"]).strip()
    if account.get("primaryPhone"):
        payload["phone_numbers"] = [{"number": str(account["primaryPhone"]).strip(), "type": "Primary"}]
    address = parse_address(first_address(account.get("address")))
    if address:
        payload["addresses"] = [{"type": "BILLING", **address}]
    return payload


def qbo_address(full: str | None) -> dict[str, Any] | None:
    parsed = parse_address(full)
    if not parsed:
        return None
    out = {
        "Line1": parsed.get("street_1"),
        "City": parsed.get("city"),
        "CountrySubDivisionCode": parsed.get("country_subdivision"),
        "PostalCode": parsed.get("zip_code"),
        "Country": parsed.get("country"),
    }
    return {k: v for k, v in out.items() if v}


def job_payload(project: Mapping[str, Any], display_name: str, parent_remote_id: str) -> dict[str, Any]:
    """QBO Customer (sub-customer) body for a project, sent through Merge passthrough (Contact has no parent)."""
    body: dict[str, Any] = {
        "DisplayName": display_name,
        "Job": True,
        "ParentRef": {"value": str(parent_remote_id)},
        "BillWithParent": True,
    }
    if project.get("primaryEmail"):
        body["PrimaryEmailAddr"] = {"Address": str(project["primaryEmail"]).strip()}
    if project.get("primaryPhone"):
        body["PrimaryPhone"] = {"FreeFormNumber": str(project["primaryPhone"]).strip()}
    ship = qbo_address(first_address(project.get("address")))
    if ship:
        body["ShipAddr"] = ship
    return body


def job_contact_patch(job: Mapping[str, Any]) -> dict[str, Any]:
    """The Merge Contact fields of a job, used to update a job once Merge has synced it as a Contact."""
    patch: dict[str, Any] = {"name": job["DisplayName"]}
    if job.get("PrimaryEmailAddr"):
        patch["email_address"] = job["PrimaryEmailAddr"]["Address"]
    if job.get("PrimaryPhone"):
        patch["phone_numbers"] = [{"number": job["PrimaryPhone"]["FreeFormNumber"], "type": "Primary"}]
    return patch


def money(value: Any) -> Decimal:
    """A Coperniq amount (dollars; missing = 0) for QuickBooks, rounded once, half up, to the cent. A Decimal:
    it goes out as the same JSON number a float did (sync_ledger.http) and keeps its fingerprint."""
    return to_money(value or 0)


def invoice_number(invoice: Mapping[str, Any], prefix: str = "") -> str:
    """QuickBooks DocNumber of a Coperniq invoice: `invoice_number_prefix` + its uid (QuickBooks allows 21)."""
    return f"{prefix}{invoice.get('uid') or invoice['id']}"[:21]


def invoice_fingerprint(desired: Mapping[str, Any]) -> str:
    """What "this invoice changed" compares: everything but its number, which never changes after creation."""
    return fingerprint({k: v for k, v in desired.items() if k != "number"})


def invoice_payload(
    invoice: Mapping[str, Any], contact_id: str, lines: list[dict[str, Any]], *, number_prefix: str = ""
) -> dict[str, Any]:
    """Merge InvoiceRequest: an AR invoice numbered from Coperniq's uid (QuickBooks has no drafts: `status` is
    computed by QuickBooks from the balance and ignored on write)."""
    payload: dict[str, Any] = {
        "type": "ACCOUNTS_RECEIVABLE",
        "number": invoice_number(invoice, number_prefix),
        "contact": contact_id,
        "line_items": lines,
        "total_amount": money(invoice.get("amount")),
    }
    issue = invoice.get("issueDate") or invoice.get("createdAt")
    if issue:
        payload["issue_date"] = issue
    if invoice.get("dueDate"):
        payload["due_date"] = invoice["dueDate"]
    if invoice.get("description"):
        payload["memo"] = str(invoice["description"])
    return payload


def invoice_line(line: Mapping[str, Any], item_id: str) -> dict[str, Any]:
    """Merge InvoiceLineItemRequest: QuickBooks checks Amount = UnitPrice x Qty, so the amount is the product of
    the quantity sent and the unit price sent, in Decimal (3 x 0.1 is 0.30, not 0.30000000000000004)."""
    qty = line.get("quantity") or 0
    price = money(line.get("unitPrice"))
    catalog = line.get("catalogItem") or {}
    description = line.get("description") or catalog.get("name") or ""
    return {
        "description": str(description),
        "quantity": qty,  # as Coperniq sent it (an integer there): its JSON, and so its fingerprint, unchanged
        "unit_price": price,
        "total_amount": to_money((to_decimal(qty) or 0) * price),
        "item": item_id,
    }


def payment_payload(
    payment: Mapping[str, Any],
    *,
    contact_id: str,
    account_id: str,
    invoice_id: str,
) -> dict[str, Any]:
    """Merge PaymentRequest applied to the invoice."""
    when = payment.get("paymentDate") or payment.get("createdAt")
    amount = money(payment.get("amount"))
    return {
        "transaction_date": when,
        "contact": contact_id,
        "account": account_id,
        "total_amount": amount,
        "type": "ACCOUNTS_RECEIVABLE",
        "applied_to_lines": [
            {
                "applied_amount": money_text(amount),  # Merge's decimal string
                "applied_date": when,
                "related_object_id": invoice_id,
                "related_object_type": "INVOICE",
            }
        ],
    }


def _empty(value: Any) -> bool:
    return value is None or value in ("", [], {})


#: Merge date-times that QuickBooks stores as a date (compared by day).
DATE_ONLY_FIELDS = frozenset({"issue_date", "due_date", "transaction_date"})
#: Merge amounts: numbers or decimal strings ("100.00"), compared to the cent.
MONEY_FIELDS = frozenset({"total_amount", "sub_total", "balance", "unit_price", "applied_amount"})


def _comparable(field: str, value: Any) -> Any:
    """Reduce a field to what matters for "does it differ" (Merge returns extra keys and ids on nested objects)."""
    if field == "name":
        return normalize_name(value)
    if field == "email_address":
        return normalize_email(value)
    if field == "phone_numbers" and isinstance(value, list):
        return sorted(re.sub(r"\D", "", str(p.get("number", "")) if isinstance(p, Mapping) else str(p)) for p in value)
    if field == "addresses" and isinstance(value, list):
        keys = ("street_1", "city", "zip_code")
        return sorted(tuple(normalize_name(a.get(k)) for k in keys) for a in value if isinstance(a, Mapping))
    if field in DATE_ONLY_FIELDS and value:
        return str(value)[:10]  # QuickBooks keeps the day only (TxnDate, DueDate): times never differ there
    if field in MONEY_FIELDS and (amount := to_decimal(value)) is not None:
        return to_money(amount)  # Merge's "100.00" and our Decimal("100.00") are the same amount
    if isinstance(value, float | int | Decimal) and not isinstance(value, bool):
        return to_decimal(value)
    return value


#: Contact fields `replace` clears in QuickBooks when Coperniq has no value any more (enrich never blanks out).
CLEARABLE_CONTACT_FIELDS: dict[str, Any] = {"email_address": None, "phone_numbers": [], "addresses": []}


def with_clears(desired: Mapping[str, Any], fields: Mapping[str, Any] = CLEARABLE_CONTACT_FIELDS) -> dict[str, Any]:
    """`desired` plus an explicit empty value for every clearable field it leaves out (for `replace`)."""
    return {**{k: v for k, v in fields.items() if k not in desired}, **desired}


def describe_patch(patch: Mapping[str, Any], existing: Mapping[str, Any]) -> str:
    """What a PATCH changes, per field, old -> new, for the integration log a bookkeeper reads."""

    def show(field: str, value: Any) -> str:
        if _empty(value):
            return "(empty)"
        if field == "phone_numbers" and isinstance(value, list):
            return ", ".join(str(p.get("number")) for p in value if isinstance(p, Mapping))
        if field == "addresses" and isinstance(value, list):
            return "; ".join(
                " ".join(str(a.get(k) or "") for k in ("street_1", "city", "zip_code")).strip()
                for a in value
                if isinstance(a, Mapping)
            )
        text = str(value)
        return repr(text if len(text) <= 60 else text[:57] + "...")

    return ", ".join(f"{k}: {show(k, existing.get(k))} -> {show(k, patch[k])}" for k in sorted(patch))


def conflicting_contact(desired: Mapping[str, Any], candidate: Mapping[str, Any]) -> str | None:
    """Why a same-name QuickBooks contact is somebody else: a different email, or (neither email to tell) a
    different phone *and* a different address. None when nothing contradicts it (a missing value is no evidence)."""
    mine, theirs = normalize_email(desired.get("email_address")), normalize_email(candidate.get("email_address"))
    if mine and theirs:
        return None if mine == theirs else f"different email ({theirs})"
    phones = [_comparable("phone_numbers", x.get("phone_numbers")) for x in (desired, candidate)]
    places = [_comparable("addresses", x.get("addresses")) for x in (desired, candidate)]
    phone_differs = all(phones) and not set(phones[0]) & set(phones[1])
    place_differs = all(places) and not set(places[0]) & set(places[1])
    return "different phone and address" if phone_differs and place_differs else None


def diff_for_strategy(desired: Mapping[str, Any], existing: Mapping[str, Any], strategy: str) -> dict[str, Any]:
    """Fields to PATCH onto an existing QuickBooks record.

    enrich: only fields Coperniq has a value for that are empty or different there (never blanks anything out);
    replace: every Coperniq field that differs; skip: nothing.
    """
    if strategy == "skip":
        return {}
    out: dict[str, Any] = {}
    for key, value in desired.items():
        if _empty(value) and strategy == "enrich":
            continue
        if _comparable(key, value) != _comparable(key, existing.get(key)):
            out[key] = value
    return out
