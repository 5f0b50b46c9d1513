"""Merge sandbox Contacts: Merge fields <-> QBO Customer/Vendor, and POST/PATCH /contacts.

A Contact is a view of a QBO customer or vendor: writes go to the QBO company first (where its name rules live),
and the Contact is then (re)built from the QBO object, as Merge's sync would build it.
"""

from __future__ import annotations

from typing import Any

from sandbox.merge_qbo import QboError
from sandbox.merge_schema import (
    ADDRESS_FIELDS,
    WriteError,
    nested_warnings,
    norm_date,
    problem,
    provider_problem,
    screen,
    type_error,
)
from sandbox.merge_store import Row
from sandbox.merge_tables import MergeTables


def qbo_contact_body(fields: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge Contact fields -> QBO Customer/Vendor fields (sparse: only what was given)."""
    body: dict[str, Any] = {}
    if "name" in fields:
        if fields["name"] is not None and not isinstance(fields["name"], str):
            raise type_error("model/name", "name must be a string.")
        body["DisplayName"] = fields["name"]
    if "email_address" in fields:
        body["PrimaryEmailAddr"] = {"Address": fields["email_address"]} if fields["email_address"] else None
    if fields.get("status"):
        if fields["status"] not in ("ACTIVE", "ARCHIVED"):
            raise WriteError(
                [
                    problem(
                        "model/status",
                        "Invalid Field Choice",
                        "status must be ACTIVE or ARCHIVED.",
                        "INVALID_FIELD_CHOICE",
                    )
                ]
            )
        body["Active"] = fields["status"] == "ACTIVE"
    if fields.get("currency"):
        body["CurrencyRef"] = {"value": fields["currency"]}
    if "tax_number" in fields:
        body["PrimaryTaxIdentifier"] = fields["tax_number"]
    if "addresses" in fields:
        if not isinstance(fields["addresses"], list):
            raise type_error("model/addresses", "addresses must be a list.")
        body["BillAddr"] = body["ShipAddr"] = None
        for addr in fields["addresses"]:
            if not isinstance(addr, dict):
                raise type_error("model/addresses", "addresses must be objects.")
            qaddr = {
                "Line1": addr.get("street_1"),
                "Line2": addr.get("street_2"),
                "City": addr.get("city"),
                "CountrySubDivisionCode": addr.get("country_subdivision") or addr.get("state"),
                "PostalCode": addr.get("zip_code"),
                "Country": addr.get("country"),
            }
            key = "ShipAddr" if addr.get("type") == "SHIPPING" else "BillAddr"
            body[key] = {k: v for k, v in qaddr.items() if v is not None}
    if "phone_numbers" in fields:
        if not isinstance(fields["phone_numbers"], list):
            raise type_error("model/phone_numbers", "phone_numbers must be a list.")
        body["PrimaryPhone"] = body["Mobile"] = None
        for phone in fields["phone_numbers"]:
            if isinstance(phone, dict) and phone.get("number"):
                key = "Mobile" if str(phone.get("type") or "").lower() == "mobile" else "PrimaryPhone"
                body.setdefault(key, None)
                if body[key] is None:
                    body[key] = {"FreeFormNumber": phone["number"]}
    return body


def contact_fields_from_qbo(entity: str, obj: dict[str, Any], home_currency: str = "USD") -> dict[str, Any]:
    """QBO Customer/Vendor -> the Merge Contact common-model fields (what Merge's sync would produce)."""
    addresses = []
    for key, kind in (("BillAddr", "BILLING"), ("ShipAddr", "SHIPPING")):
        addr = obj.get(key)
        if addr:
            country = addr.get("Country")
            addresses.append(
                {
                    "type": kind,
                    "street_1": addr.get("Line1"),
                    "street_2": addr.get("Line2"),
                    "city": addr.get("City"),
                    "state": addr.get("CountrySubDivisionCode"),
                    "country_subdivision": addr.get("CountrySubDivisionCode"),
                    "country": country if isinstance(country, str) and len(country) == 2 else None,
                    "zip_code": addr.get("PostalCode"),
                }
            )
    phones = [
        {"number": obj[key]["FreeFormNumber"], "type": kind}
        for key, kind in (("PrimaryPhone", "Primary"), ("Mobile", "Mobile"))
        if obj.get(key) and obj[key].get("FreeFormNumber")
    ]
    email = (obj.get("PrimaryEmailAddr") or {}).get("Address")
    return {
        "name": obj.get("DisplayName"),
        "is_supplier": entity == "Vendor",
        "is_customer": entity == "Customer",
        "email_address": email,
        "tax_number": obj.get("PrimaryTaxIdentifier"),
        "status": "ACTIVE" if obj.get("Active", True) else "ARCHIVED",
        "currency": (obj.get("CurrencyRef") or {}).get("value") or home_currency,
        "remote_updated_at": norm_date(obj["MetaData"]["LastUpdatedTime"]),
        "company": None,
        "addresses": addresses,
        "phone_numbers": phones,
    }


def sync_contact(data: MergeTables, entity: str, obj: dict[str, Any]) -> Row:
    """Materialize/refresh the Merge Contact for a QBO customer/vendor; modified_at moves only on changes."""
    fields = contact_fields_from_qbo(entity, obj, data.tax.currency)
    table = data.t("contacts")
    row = table.by_remote_id(obj["Id"], entity)
    if row is None:
        row = table.insert(data.new_row("contacts", remote_id=obj["Id"], _entity=entity, **fields))
        stamp_children(row)
        return row
    public = {k: row.get(k) for k in fields}
    if public != fields:
        row.update(fields)
        table.touch(row)
        stamp_children(row)
    return row


def stamp_children(row: Row) -> None:
    """Addresses and phone numbers carry their contact's created_at/modified_at."""
    for child in row["addresses"] + row["phone_numbers"]:
        child["created_at"] = row["created_at"]
        child["modified_at"] = row["modified_at"]


def write_contact(data: MergeTables, model: Any, existing: Row | None = None) -> tuple[Row, list[dict[str, Any]]]:
    """POST/PATCH /contacts: Merge validation, then the QBO rules (in QboCompany), then the synced Contact."""
    op = "PATCH contacts" if existing else "POST contacts"
    fields, warnings = screen(model, op)
    warnings += nested_warnings(fields.get("addresses") or [], ADDRESS_FIELDS, "model/addresses")
    if existing is None:
        entity = "Vendor" if fields.get("is_supplier") and not fields.get("is_customer") else "Customer"
        body = qbo_contact_body(fields)
    else:
        entity = existing.get("_entity", "Customer")
        if "is_customer" in fields or "is_supplier" in fields:
            wants_vendor = bool(fields.get("is_supplier", existing["is_supplier"])) and not fields.get(
                "is_customer", existing["is_customer"]
            )
            if wants_vendor != (entity == "Vendor"):
                warnings.append(
                    problem(
                        "model/is_customer",
                        "Unsupported Field",
                        "QuickBooks Online cannot convert a customer into a vendor or back; "
                        "is_customer/is_supplier were ignored.",
                        "UNSUPPORTED_FIELD",
                    )
                )
        body = qbo_contact_body(fields)
        body.update({"Id": existing["remote_id"], "sparse": True})
    try:
        if existing is None:
            obj = data.qbo.create(entity, body, notify=False)
        else:
            obj = data.qbo.update(entity, body, notify=False, check_sync_token=False)
    except QboError as exc:
        raise WriteError(
            [provider_problem(exc, "model/name" if exc.element == "DisplayName" else "model")], warnings
        ) from None
    return sync_contact(data, entity, obj), warnings
