"""Coperniq sandbox invoice writes: invoice lines (replace and append semantics), invoices and their payments.

Why apart from the other inserts: an invoice's lines are rebuilt on PATCH as well as on create, and a payment rolls
into its invoice (amountPaid, status), so these belong together; the same rules as `coperniq_inserts` apply (callers
validate first and hold the app's lock).
"""

from __future__ import annotations

from typing import Any

from sandbox.coperniq_state import DAY_US, SANDBOX_USER, CoperniqState, iso


def invoice_line(st: CoperniqState, spec: dict[str, Any], section: str | None, lid: int) -> dict[str, Any]:
    """One invoice line as the API returns it (shared by replace and append PATCH semantics)."""
    item = st.catalog_items[spec["catalogItemId"]]
    return {
        "id": lid,
        "catalogItemId": item["id"],
        "quantity": spec["quantity"],
        "unitCost": float(spec["unitCost"]),
        "unitPrice": float(spec["unitPrice"]),
        "description": spec.get("description"),
        "sectionName": section,
        "catalogItem": {
            "id": item["id"],
            "name": item["name"],
            "manufacturer": item["manufacturer"],
            "sku": item["sku"],
            "type": item["type"],
        },
    }


def build_lines(
    st: CoperniqState, lines: list[tuple[dict[str, Any], str | None]], existing: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The new set of lines; a line whose `id` is one of `existing` keeps it, every other gets a new id."""
    keep = {li["id"] for li in existing or []}
    out = []
    for spec, section in lines:
        lid = spec.get("id")
        out.append(
            invoice_line(st, spec, section, lid if isinstance(lid, int) and lid in keep else st.next_id("line_item"))
        )
    return out


def merge_lines(
    st: CoperniqState, lines: list[tuple[dict[str, Any], str | None]], existing: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`invoice_patch_replaces_lines=False`: a line with an existing `id` updates that line in place, every
    other line is appended; lines not sent stay (so re-sending the full set without ids doubles it)."""
    out = list(existing)
    index = {li["id"]: i for i, li in enumerate(out)}
    for spec, section in lines:
        lid = spec.get("id")
        if isinstance(lid, int) and lid in index:
            out[index[lid]] = invoice_line(st, spec, section, lid)
        else:
            out.append(invoice_line(st, spec, section, st.next_id("line_item")))
    return out


def insert_invoice(
    st: CoperniqState,
    record: tuple[str, int],
    calculation_method: str,
    lines: list[tuple[dict[str, Any], str | None]],
    status: str = "DRAFT",
    issue_us: int | None = None,
    due_us: int | None = None,
    description: str | None = None,
    percentage: float | None = None,
    at_us: int | None = None,
    *,
    tax: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An invoice on `record` = ("project"|"account", id); amount from the lines or the percentage (a `tax`
    sets `taxId`/`taxRate` and leaves `amount` alone)."""
    at = at_us if at_us is not None else st.clock.tick()
    iid = st.next_id("invoice")
    line_items = build_lines(st, lines) if calculation_method == "LINE_ITEMS" else []
    base_amount = None
    if calculation_method == "PERCENTAGE":
        base_amount = float(st.projects[record[1]].get("value") or 0.0) if record[0] == "project" else 0.0
        amount = round(base_amount * (percentage or 0.0) / 100.0, 2)
    else:
        amount = round(sum(li["quantity"] * li["unitPrice"] for li in line_items), 2)
    if status == "DRAFT":
        issue_us = None
    due = due_us if due_us is not None else (issue_us or at) + 30 * DAY_US
    inv = {
        "id": iid,
        "uid": st.next_id("invoice_uid"),
        "description": description,
        "type": "INVOICE",
        "status": status,
        "basedOnId": None,
        "basedOnUid": None,
        "issueDate": iso(issue_us) if issue_us is not None else None,
        "dueDate": iso(due),
        "amount": amount,
        "amountPaid": 0.0,
        "isArchived": False,
        "sharedWithPortal": False,
        "calculationMethod": calculation_method,
        "percentage": percentage if calculation_method == "PERCENTAGE" else None,
        "baseAmount": base_amount,
        "taxId": None,
        "taxRate": None,
        "createdAt": iso(at),
        "updatedAt": iso(at),
        "account": None,
        "record": None,
        "lineItems": line_items,
        "_u": at,
        "_record": record,
    }
    apply_invoice_tax(inv, tax)
    st.invoices[iid] = inv
    st.payments[iid] = []
    if record[0] == "project":
        st.invoices_by_project.setdefault(record[1], []).append(iid)
        acc_id = st.projects[record[1]]["accountId"]
    else:
        acc_id = record[1]
    if acc_id is not None:
        st.invoices_by_account.setdefault(acc_id, []).append(iid)
    st.touch("invoices")
    return inv


def apply_invoice_tax(inv: dict[str, Any], tax: dict[str, Any] | None) -> bool:
    """Set (or, with None, clear) an invoice's tax: `taxId` and `taxRate`, the tax's rate as a number (8.25), kept
    as applied (a quote's "Applied tax rate"). True if either changed; the caller bumps `updatedAt`."""
    tax_id, rate = (tax["id"], float(tax["rate"])) if tax is not None else (None, None)
    if inv.get("taxId") == tax_id and inv.get("taxRate") == rate:
        return False
    inv["taxId"], inv["taxRate"] = tax_id, rate
    return True


def set_invoice_tax(st: CoperniqState, inv: dict[str, Any], tax: dict[str, Any] | None) -> bool:
    """A tax set or cleared in the UI: `updatedAt` bumps (as for a payment) when it really changed."""
    if not apply_invoice_tax(inv, tax):
        return False
    now = st.clock.tick()
    inv["updatedAt"], inv["_u"] = iso(now), now
    st.touch("invoices")
    return True


def insert_payment(
    st: CoperniqState,
    inv: dict[str, Any],
    amount: float,
    method: str,
    date_us: int,
    reference: str | None = None,
    notes: str | None = None,
    at_us: int | None = None,
) -> dict[str, Any]:
    """Record a payment and roll it into the invoice: amountPaid, status, updatedAt."""
    at = at_us if at_us is not None else st.clock.tick()
    payments = st.payments.setdefault(inv["id"], [])
    pay = {
        "id": st.next_id("payment"),
        "invoiceNumber": len(payments) + 1,
        "amount": round(float(amount), 2),
        "status": "COMPLETED",
        "paymentMethod": method,
        "paymentDate": iso(date_us),
        "paymentReference": reference,
        "notes": notes,
        "isExternal": False,
        "createdAt": iso(at),
        "updatedAt": iso(at),
        "createdBy": {k: SANDBOX_USER[k] for k in ("id", "firstName", "lastName")},
    }
    st.payments[inv["id"]] = [*payments, pay]
    paid = round(inv["amountPaid"] + pay["amount"], 2)
    inv["amountPaid"] = paid
    inv["status"] = _paid_status(inv, paid) or inv["status"]
    inv["updatedAt"], inv["_u"] = iso(at), at
    st.touch("invoices")
    return pay


def remove_payment(st: CoperniqState, inv: dict[str, Any], payment_id: int, *, bump_updated_at: bool) -> bool:
    """Delete a payment as Coperniq's UI does and take it out of its invoice (amountPaid, status); `updatedAt` moves
    only with `bump_updated_at`. False when the invoice has no such payment."""
    payments = st.payments.get(inv["id"], [])
    gone = [p for p in payments if p["id"] == payment_id]
    if not gone:
        return False
    st.payments[inv["id"]] = [p for p in payments if p["id"] != payment_id]
    if gone[0].get("status") == "COMPLETED":  # what counted in amountPaid
        _uncount(inv, gone[0]["amount"])
    if bump_updated_at:
        at = st.clock.tick()
        inv["updatedAt"], inv["_u"] = iso(at), at
    st.touch("invoices")
    return True


def take_back_payment(st: CoperniqState, inv: dict[str, Any], payment_id: int, status: str, *, counted: bool) -> bool:
    """A payment's status changed in Coperniq's UI (refunded, voided, failed): the payment and its invoice get a new
    `updatedAt`; its amount stays in the invoice's `amountPaid` only while `counted`. False: no such payment."""
    rows = [p for p in st.payments.get(inv["id"], []) if p["id"] == payment_id]
    if not rows:
        return False
    [row] = rows
    at = st.clock.tick()
    was_counted = row.get("status") == "COMPLETED"
    row["status"], row["updatedAt"] = status, iso(at)
    if was_counted and status != "COMPLETED" and not counted:
        _uncount(inv, row["amount"])
    inv["updatedAt"], inv["_u"] = iso(at), at
    st.touch("invoices")
    return True


def _uncount(inv: dict[str, Any], amount: float) -> None:
    """A payment's amount out of its invoice's `amountPaid`, and the paid status that leaves (SENT when nothing)."""
    paid = max(0.0, round(inv["amountPaid"] - amount, 2))
    inv["amountPaid"] = paid
    if inv.get("status") in ("PAID", "PARTIALLY_PAID"):
        inv["status"] = _paid_status(inv, paid) or "SENT"


def _paid_status(inv: dict[str, Any], paid: float) -> str | None:
    """The status `paid` gives an invoice: PAID, PARTIALLY_PAID, or None when nothing is paid."""
    if paid >= inv["amount"] - 0.005:
        return "PAID"
    return "PARTIALLY_PAID" if paid > 0 else None
