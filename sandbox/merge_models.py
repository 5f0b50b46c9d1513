"""Merge Accounting common models over the emulated QBO company: validation, writes, serialization.

Everything that changes data goes through here (HTTP writes, passthrough sync-back and the admin helpers),
so the QuickBooks rules are enforced in exactly one place.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

from sandbox.merge_qbo import QboCompany, QboError, business_error, invalid_reference, missing_param, norm_name
from sandbox.merge_store import Row, Table, iso, now_us, parse_dt

FIELD_MAPPINGS = {"organization_defined_targets": {}, "linked_account_defined_targets": {}}

# QBO supported fields per write (from qbo_supported_fields.json, the Merge docs' integration widget)
SUPPORTED: dict[str, list[str]] = {
    "POST contacts": ["addresses", "currency", "email_address", "is_customer", "is_supplier", "name",
                      "phone_numbers", "remote_id", "remote_updated_at", "status", "tax_number"],
    "PATCH contacts": ["addresses", "currency", "email_address", "is_customer", "is_supplier", "name",
                       "phone_numbers", "remote_updated_at", "status", "tax_number"],
    "POST invoices": ["balance", "contact", "currency", "due_date", "exchange_rate", "inclusive_of_tax",
                      "issue_date", "line_items", "memo", "model_uuid", "number", "payment_term", "remote_id",
                      "remote_updated_at", "status", "total_amount", "total_discount", "total_tax_amount",
                      "tracking_categories", "type"],
    "PATCH invoices": ["balance", "contact", "currency", "due_date", "exchange_rate", "issue_date", "line_items",
                       "memo", "model_uuid", "number", "payment_term", "remote_id", "remote_updated_at", "status",
                       "total_amount", "total_tax_amount", "tracking_categories", "type"],
    "POST payments": ["account", "applied_to_lines", "contact", "currency", "exchange_rate", "invoice",
                      "journal_entry", "payment_method", "remote_id", "remote_updated_at", "total_amount",
                      "transaction_date"],
    "PATCH payments": ["account", "applied_to_lines", "contact", "currency", "exchange_rate", "remote_id",
                       "remote_updated_at", "total_amount", "transaction_date"],
    "POST items": ["name", "purchase_account", "purchase_price", "remote_id", "remote_updated_at", "sales_account",
                   "status", "type", "unit_price"],
    "PATCH items": ["name", "purchase_account", "purchase_price", "remote_id", "remote_updated_at",
                    "sales_account", "status", "type", "unit_price"],
}
REQUIRED: dict[str, list[str]] = {
    "POST contacts": ["name"], "POST invoices": ["contact", "line_items", "type"],
    "POST payments": ["account", "contact", "total_amount", "transaction_date"], "POST items": ["name"],
}
LINE_FIELDS = ["account", "contact", "description", "is_billable", "item", "project", "quantity", "remote_id",
               "total_amount", "tracking_categories", "unit_price"]
APPLIED_FIELDS = ["applied_amount", "applied_date", "related_object_id", "related_object_type", "remote_id"]
ADDRESS_FIELDS = ["type", "street_1", "street_2", "city", "state", "country_subdivision", "country", "zip_code"]
SILENT = {"integration_params", "linked_account_params", "remote_fields"}  # accepted, no QBO effect

_S = {"type": ["string", "null"]}
_N = {"type": ["number", "null"]}
_B = {"type": ["boolean", "null"]}
_DT = {"type": ["string", "null"], "format": "date-time"}
_UUID = {"type": ["string", "null"], "format": "uuid"}
FIELD_SCHEMAS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": 100}, "is_customer": _B, "is_supplier": _B, "email_address": _S,
    "tax_number": _S, "status": _S, "currency": _S, "remote_id": _S, "remote_updated_at": _DT,
    "addresses": {"type": "array", "items": {"type": "object",
                                             "properties": {f: _S for f in ADDRESS_FIELDS}}},
    "phone_numbers": {"type": "array", "items": {"type": "object", "properties": {"number": _S, "type": _S}}},
    "contact": _UUID, "account": _UUID, "payment_method": _UUID, "payment_term": _UUID, "invoice": _UUID,
    "journal_entry": _UUID, "purchase_account": _UUID, "sales_account": _UUID,
    "number": {"type": ["string", "null"], "maxLength": 21}, "memo": _S, "issue_date": _DT, "due_date": _DT,
    "transaction_date": _DT, "exchange_rate": _S, "inclusive_of_tax": _B, "balance": _N, "total_amount": _N,
    "total_discount": _N, "total_tax_amount": _N, "unit_price": _N, "purchase_price": _N, "model_uuid": _UUID,
    "tracking_categories": {"type": "array", "items": {"type": "string", "format": "uuid"}},
    "type": _S,
    "line_items": {"type": "array", "minItems": 1, "items": {"type": "object", "properties": {
        "account": _UUID, "contact": _UUID, "description": _S, "is_billable": _B, "item": _UUID, "project": _UUID,
        "quantity": _N, "remote_id": _S, "total_amount": _N, "unit_price": _N,
        "tracking_categories": {"type": "array", "items": {"type": "string"}}}}},
    "applied_to_lines": {"type": "array", "items": {"type": "object", "properties": {
        "applied_amount": _S, "applied_date": _DT, "related_object_id": _UUID,
        "related_object_type": {"type": "string", "enum": ["INVOICE", "CREDIT_NOTE", "JOURNAL_ENTRY"]},
        "remote_id": _S}, "required": ["applied_amount", "related_object_id", "related_object_type"]}},
}
EXPANDS = {
    "contacts": {"addresses", "company", "phone_numbers"},
    "invoices": {"accounting_period", "applied_credit_notes", "applied_payments", "applied_vendor_credits",
                 "company", "contact", "employee", "line_items", "payment_term", "payments", "purchase_orders",
                 "sales_orders", "tracking_categories"},
    "payments": {"account", "accounting_period", "applied_to_lines", "company", "contact", "payment_method",
                 "tracking_categories"},
    "items": {"company", "purchase_account", "purchase_tax_rate", "sales_account", "sales_tax_rate"},
    "accounts": {"company"},
    "company-info": {"addresses", "phone_numbers"},
}


#: the QBO entity behind each table (its Id counter when QuickBooks numbers entities separately); contacts are
#: customers unless the row says otherwise (`_entity`)
QBO_ENTITY = {"contacts": "Customer", "invoices": "Invoice", "payments": "Payment", "items": "Item",
              "accounts": "Account", "company-info": "CompanyInfo"}


def problem(pointer: str, title: str, detail: str, problem_type: str, **extra: Any) -> dict[str, Any]:
    """One Merge ValidationProblem."""
    return {"source": {"pointer": pointer}, "title": title, "detail": detail, "problem_type": problem_type, **extra}


def provider_problem(exc: QboError, pointer: str = "model") -> dict[str, Any]:
    """A QBO Fault as Merge reports it: PROVIDER_ERROR carrying the raw QBO error."""
    return problem(pointer, exc.message, f"{exc.message}: {exc.detail}", "PROVIDER_ERROR",
                   raw_error=json.dumps(exc.fault()), error_code=int(exc.code) if exc.code.isdigit() else 0)


class WriteError(Exception):
    """A rejected write: becomes 400 {"warnings": [...], "errors": [...]}."""

    def __init__(self, errors: list[dict[str, Any]], warnings: list[dict[str, Any]] | None = None) -> None:
        super().__init__("; ".join(e["detail"] for e in errors))
        self.errors = errors
        self.warnings = warnings or []


def money(value: Any) -> float:
    """Numbers and decimal strings -> float rounded to cents; raises ValueError/TypeError."""
    if isinstance(value, bool) or value is None:
        raise TypeError("not a number")
    return round(float(value), 2)


def norm_date(value: Any) -> str | None:
    """Client dates ("2025-01-15" or datetimes) -> Merge's date-time string."""
    if value in (None, ""):
        return None
    dt = parse_dt(str(value))
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT00:00:00Z")


class MergeData:
    """All common-model tables plus the QBO company they mirror."""

    def __init__(self, company: QboCompany, *, company_name: str, unique_invoice_numbers: bool = True) -> None:
        self.qbo = company
        self.unique_invoice_numbers = unique_invoice_numbers
        self.tables: dict[str, Table] = {n: Table(n, QBO_ENTITY[n]) for n in
                                         ("contacts", "invoices", "payments", "items", "accounts", "company-info")}
        self.payment_lines: dict[str, Row] = {}
        self.doc_numbers: dict[str, str] = {}  # casefolded DocNumber -> invoice id (non-deleted AR invoices)
        self.next_doc_number = 1001
        self.qbo.other_entities = self._qbo_entities
        self._seed_defaults(company_name)

    # --- helpers ----------------------------------------------------------------------------------
    def t(self, name: str) -> Table:
        return self.tables[name]

    def _new_row(self, table: str, **fields: Any) -> Row:
        """A new common-model row; without a `remote_id`, QBO's next Id for the table's entity."""
        return {"id": str(uuid.uuid4()),
                "remote_id": fields.pop("remote_id", None) or self.qbo.new_id(QBO_ENTITY[table]),
                "created_at": None, "modified_at": None, **fields, "remote_was_deleted": False,
                "field_mappings": copy.deepcopy(FIELD_MAPPINGS)}

    def live(self, table: str, id_: Any) -> Row | None:
        row = self.t(table).get(id_) if isinstance(id_, str) else None
        return row if row is not None and not row["remote_was_deleted"] else None

    def _seed_defaults(self, company_name: str) -> None:
        """What a fresh QBO company has: company info, core accounts, the default items."""
        self.t("company-info").insert(self._new_row("company-info",
            name=company_name, legal_name=f"{company_name} LLC", tax_number=None, fiscal_year_end_month=12,
            fiscal_year_end_day=31, currency="USD", remote_created_at="2020-01-01T00:00:00Z", urls=[],
            addresses=[], phone_numbers=[]))
        self.add_account("Services", classification="REVENUE", type="Income", account_type="OTHER_INCOME")
        self.add_account("Sales of Product Income", classification="REVENUE", type="Income",
                         account_type="OTHER_INCOME")
        self.add_account("Undeposited Funds", classification="ASSET", type="Other Current Asset",
                         account_type="OTHER_CURRENT_ASSET")
        self.add_account("Accounts Receivable (A/R)", classification="ASSET", type="Accounts Receivable",
                         account_type="ACCOUNTS_RECEIVABLE")
        self.add_account("Checking", classification="ASSET", type="Bank", account_type="BANK")
        income = self.find("accounts", "Services")
        product = self.find("accounts", "Sales of Product Income")
        self.add_item("Services", type="SERVICE", unit_price=None, sales_account=income["id"] if income else None)
        self.add_item("Hours", type="SERVICE", unit_price=None, sales_account=income["id"] if income else None)
        self.add_item("Solar Panel Installation", type="NON_INVENTORY", unit_price=None,
                      sales_account=product["id"] if product else None)

    def find(self, table: str, name: str) -> Row | None:
        """First live row of `table` with this name (case-insensitive); admin convenience."""
        key = name.strip().casefold()
        for row in self.t(table).order:
            if not row["remote_was_deleted"] and str(row.get("name") or "").casefold() == key:
                return row
        return None

    def default_item(self) -> Row | None:
        return self.find("items", "Services")

    # --- accounts / items -------------------------------------------------------------------------
    def add_account(self, name: str, *, classification: str = "REVENUE", type: str = "Income",  # noqa: A002
                    account_type: str | None = "OTHER_INCOME", **extra: Any) -> Row:
        return self.t("accounts").insert(self._new_row("accounts",
            name=name, description=extra.pop("description", None), classification=classification, type=type,
            account_type=account_type, status=extra.pop("status", "ACTIVE"),
            current_balance=extra.pop("current_balance", 0.0), currency="USD",
            account_number=extra.pop("account_number", None), parent_account=None, company=None, **extra))

    def add_item(self, name: str, *, type: str = "SERVICE", unit_price: float | None = None,  # noqa: A002
                 sales_account: str | None = None, **extra: Any) -> Row:
        clean = name.strip() if isinstance(name, str) else name
        if not clean:
            raise WriteError([problem("model/name", "Missing Required Field", "name is a required field on model.",
                                      "MISSING_REQUIRED_FIELD")])
        if self.find("items", clean):
            raise WriteError([provider_problem(QboError("6240", "Duplicate Name Exists Error",
                                                        f"The name supplied already exists. : {clean}", "Name"),
                                               "model/name")])
        return self.t("items").insert(self._new_row("items",
            name=clean, status=extra.pop("status", "ACTIVE"), type=type, unit_price=unit_price,
            purchase_price=extra.pop("purchase_price", None), purchase_account=extra.pop("purchase_account", None),
            sales_account=sales_account, company=None, purchase_tax_rate=None, sales_tax_rate=None,
            remote_updated_at=None, **extra))

    def write_item(self, model: dict[str, Any], existing: Row | None = None) -> tuple[Row, list[dict[str, Any]]]:
        op = "PATCH items" if existing else "POST items"
        fields, warnings = self._screen(model, op)
        if existing is None:
            row = self.add_item(fields.get("name"), type=fields.get("type") or "SERVICE",
                                unit_price=fields.get("unit_price"), sales_account=fields.get("sales_account"),
                                purchase_price=fields.get("purchase_price"),
                                purchase_account=fields.get("purchase_account"),
                                status=fields.get("status") or "ACTIVE")
            return row, warnings
        for key in ("name", "type", "unit_price", "purchase_price", "sales_account", "purchase_account", "status"):
            if key in fields:
                existing[key] = fields[key]
        self.t("items").touch(existing)
        return existing, warnings

    # --- validation helpers -----------------------------------------------------------------------
    def _screen(self, model: Any, op: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Split a request model into supported fields and UNSUPPORTED_FIELD warnings; check required fields."""
        if not isinstance(model, dict):
            raise WriteError([problem("model", "Invalid Request Body", "model must be an object.",
                                      "INCORRECT_FIELD_TYPE")])
        supported = set(SUPPORTED[op])
        fields: dict[str, Any] = {}
        warnings = []
        for key, value in model.items():
            if key in supported:
                fields[key] = value
            elif key not in SILENT:
                warnings.append(problem(f"model/{key}", "Unsupported Field",
                                        f"{key} is not supported by QuickBooks Online for this operation and was "
                                        f"ignored.", "UNSUPPORTED_FIELD"))
        errors = [problem(f"model/{key}", "Missing Required Field", f"{key} is a required field on model.",
                          "MISSING_REQUIRED_FIELD")
                  for key in REQUIRED.get(op, []) if fields.get(key) in (None, "", [])]
        if errors:
            raise WriteError(errors, warnings)
        return fields, warnings

    @staticmethod
    def _nested_warnings(items: list[Any], allowed: list[str], pointer: str) -> list[dict[str, Any]]:
        out = []
        for i, entry in enumerate(items):
            if isinstance(entry, dict):
                for key in entry:
                    if key not in allowed and key not in SILENT:
                        out.append(problem(f"{pointer}/{i}/{key}", "Unsupported Field",
                                           f"{key} is not supported by QuickBooks Online and was ignored.",
                                           "UNSUPPORTED_FIELD"))
        return out

    @staticmethod
    def _type_error(pointer: str, detail: str) -> WriteError:
        return WriteError([problem(pointer, "Incorrect Field Type", detail, "INCORRECT_FIELD_TYPE")])

    def _money_field(self, value: Any, pointer: str) -> float:
        try:
            return money(value)
        except (TypeError, ValueError):
            raise self._type_error(pointer, f"{pointer.split('/')[-1]} must be a number.") from None

    def _date_field(self, value: Any, pointer: str) -> str | None:
        try:
            return norm_date(value)
        except ValueError:
            raise self._type_error(pointer, f"{pointer.split('/')[-1]} must be an ISO-8601 date-time.") from None

    # --- contacts ---------------------------------------------------------------------------------
    def _qbo_contact_body(self, fields: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
        """Merge Contact fields -> QBO Customer/Vendor fields (sparse: only what was given)."""
        body: dict[str, Any] = {}
        if "name" in fields:
            if fields["name"] is not None and not isinstance(fields["name"], str):
                raise self._type_error("model/name", "name must be a string.")
            body["DisplayName"] = fields["name"]
        if "email_address" in fields:
            body["PrimaryEmailAddr"] = {"Address": fields["email_address"]} if fields["email_address"] else None
        if "status" in fields and fields["status"]:
            if fields["status"] not in ("ACTIVE", "ARCHIVED"):
                raise WriteError([problem("model/status", "Invalid Field Choice",
                                          "status must be ACTIVE or ARCHIVED.", "INVALID_FIELD_CHOICE")])
            body["Active"] = fields["status"] == "ACTIVE"
        if "currency" in fields and fields["currency"]:
            body["CurrencyRef"] = {"value": fields["currency"]}
        if "tax_number" in fields:
            body["PrimaryTaxIdentifier"] = fields["tax_number"]
        if "addresses" in fields:
            if not isinstance(fields["addresses"], list):
                raise self._type_error("model/addresses", "addresses must be a list.")
            body["BillAddr"] = body["ShipAddr"] = None
            for addr in fields["addresses"]:
                if not isinstance(addr, dict):
                    raise self._type_error("model/addresses", "addresses must be objects.")
                qaddr = {"Line1": addr.get("street_1"), "Line2": addr.get("street_2"), "City": addr.get("city"),
                         "CountrySubDivisionCode": addr.get("country_subdivision") or addr.get("state"),
                         "PostalCode": addr.get("zip_code"), "Country": addr.get("country")}
                key = "ShipAddr" if addr.get("type") == "SHIPPING" else "BillAddr"
                body[key] = {k: v for k, v in qaddr.items() if v is not None}
        if "phone_numbers" in fields:
            if not isinstance(fields["phone_numbers"], list):
                raise self._type_error("model/phone_numbers", "phone_numbers must be a list.")
            body["PrimaryPhone"] = body["Mobile"] = None
            for phone in fields["phone_numbers"]:
                if isinstance(phone, dict) and phone.get("number"):
                    key = "Mobile" if str(phone.get("type") or "").lower() == "mobile" else "PrimaryPhone"
                    body.setdefault(key, None)
                    if body[key] is None:
                        body[key] = {"FreeFormNumber": phone["number"]}
        return body

    @staticmethod
    def contact_fields_from_qbo(entity: str, obj: dict[str, Any]) -> dict[str, Any]:
        """QBO Customer/Vendor -> the Merge Contact common-model fields (what Merge's sync would produce)."""
        addresses = []
        for key, kind in (("BillAddr", "BILLING"), ("ShipAddr", "SHIPPING")):
            addr = obj.get(key)
            if addr:
                country = addr.get("Country")
                addresses.append({"type": kind, "street_1": addr.get("Line1"), "street_2": addr.get("Line2"),
                                  "city": addr.get("City"), "state": addr.get("CountrySubDivisionCode"),
                                  "country_subdivision": addr.get("CountrySubDivisionCode"),
                                  "country": country if isinstance(country, str) and len(country) == 2 else None,
                                  "zip_code": addr.get("PostalCode")})
        phones = [{"number": obj[key]["FreeFormNumber"], "type": kind}
                  for key, kind in (("PrimaryPhone", "Primary"), ("Mobile", "Mobile"))
                  if obj.get(key) and obj[key].get("FreeFormNumber")]
        email = (obj.get("PrimaryEmailAddr") or {}).get("Address")
        return {"name": obj.get("DisplayName"), "is_supplier": entity == "Vendor",
                "is_customer": entity == "Customer", "email_address": email,
                "tax_number": obj.get("PrimaryTaxIdentifier"),
                "status": "ACTIVE" if obj.get("Active", True) else "ARCHIVED",
                "currency": (obj.get("CurrencyRef") or {}).get("value") or "USD",
                "remote_updated_at": norm_date(obj["MetaData"]["LastUpdatedTime"]), "company": None,
                "addresses": addresses, "phone_numbers": phones}

    def sync_contact(self, entity: str, obj: dict[str, Any]) -> Row:
        """Materialize/refresh the Merge Contact for a QBO customer/vendor; modified_at moves only on changes."""
        fields = self.contact_fields_from_qbo(entity, obj)
        table = self.t("contacts")
        row = table.by_remote_id(obj["Id"], entity)
        if row is None:
            row = table.insert(self._new_row("contacts", remote_id=obj["Id"], _entity=entity, **fields))
            self._stamp_children(row)
            return row
        public = {k: row.get(k) for k in fields}
        if public != fields:
            row.update(fields)
            table.touch(row)
            self._stamp_children(row)
        return row

    @staticmethod
    def _stamp_children(row: Row) -> None:
        for child in row["addresses"] + row["phone_numbers"]:
            child["created_at"] = row["created_at"]
            child["modified_at"] = row["modified_at"]

    def write_contact(self, model: Any, existing: Row | None = None) -> tuple[Row, list[dict[str, Any]]]:
        """POST/PATCH /contacts: Merge validation, then the QBO rules (in QboCompany), then the synced Contact."""
        op = "PATCH contacts" if existing else "POST contacts"
        fields, warnings = self._screen(model, op)
        warnings += self._nested_warnings(fields.get("addresses") or [], ADDRESS_FIELDS, "model/addresses")
        if existing is None:
            entity = "Vendor" if fields.get("is_supplier") and not fields.get("is_customer") else "Customer"
            body = self._qbo_contact_body(fields)
        else:
            entity = existing.get("_entity", "Customer")
            if "is_customer" in fields or "is_supplier" in fields:
                wants_vendor = bool(fields.get("is_supplier", existing["is_supplier"])) and \
                    not fields.get("is_customer", existing["is_customer"])
                if wants_vendor != (entity == "Vendor"):
                    warnings.append(problem("model/is_customer", "Unsupported Field",
                                            "QuickBooks Online cannot convert a customer into a vendor or back; "
                                            "is_customer/is_supplier were ignored.", "UNSUPPORTED_FIELD"))
            body = self._qbo_contact_body(fields)
            body.update({"Id": existing["remote_id"], "sparse": True})
        try:
            if existing is None:
                obj = self.qbo.create(entity, body, notify=False)
            else:
                obj = self.qbo.update(entity, body, notify=False, check_sync_token=False)
        except QboError as exc:
            raise WriteError([provider_problem(exc, "model/name" if exc.element == "DisplayName" else "model")],
                             warnings) from None
        return self.sync_contact(entity, obj), warnings

    # --- invoices ---------------------------------------------------------------------------------
    def _build_lines(self, raw: Any, contact_id: str | None) -> list[Row]:
        if not isinstance(raw, list) or not raw:
            raise WriteError([problem("model/line_items", "Missing Required Field",
                                      "line_items is a required field on model and needs at least one line.",
                                      "MISSING_REQUIRED_FIELD")])
        lines = []
        for i, line in enumerate(raw):
            ptr = f"model/line_items/{i}"
            if not isinstance(line, dict):
                raise self._type_error(ptr, "line items must be objects.")
            qty = self._money_field(line["quantity"], f"{ptr}/quantity") if line.get("quantity") is not None \
                else None
            price = self._money_field(line["unit_price"], f"{ptr}/unit_price") \
                if line.get("unit_price") is not None else None
            if line.get("total_amount") is not None:
                amount = self._money_field(line["total_amount"], f"{ptr}/total_amount")
                if qty is not None and price is not None and abs(round(qty * price, 2) - amount) > 0.011:
                    raise WriteError([provider_problem(QboError(
                        "6070", "Amount is not equal to UnitPrice * Qty",
                        f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}", "Line.Amount"), ptr)])
            elif qty is not None and price is not None:
                amount = round(qty * price, 2)
            else:
                raise WriteError([provider_problem(missing_param("Line.Amount"), ptr)])
            item_id = line.get("item")
            if item_id is not None and self.live("items", item_id) is None:
                raise WriteError([provider_problem(invalid_reference("ItemRef", item_id), f"{ptr}/item")])
            account_id = line.get("account")
            if account_id is not None and self.live("accounts", account_id) is None:
                raise WriteError([provider_problem(invalid_reference("AccountRef", account_id), f"{ptr}/account")])
            if item_id is None:  # QBO puts lines without an ItemRef on the default "Services" item
                default = self.default_item()
                item_id = default["id"] if default else None
            lines.append({"id": str(uuid.uuid4()), "remote_id": str(i + 1), "created_at": None,
                          "modified_at": None, "description": line.get("description"), "unit_price": price,
                          "quantity": qty, "total_amount": amount, "employee": None, "project": None,
                          "contact": contact_id, "currency": "USD", "exchange_rate": None, "item": item_id,
                          "account": account_id, "tax_rate": None, "tracking_category": None,
                          "tracking_categories": [], "company": None, "remote_was_deleted": False,
                          "is_billable": line.get("is_billable"), "field_mappings": copy.deepcopy(FIELD_MAPPINGS)})
        return lines

    def _customer_ref(self, contact_id: Any, pointer: str = "model/contact") -> Row:
        row = self.live("contacts", contact_id)
        if row is None or not row["is_customer"] or row["status"] != "ACTIVE":
            raise WriteError([provider_problem(invalid_reference("CustomerRef", contact_id), pointer)])
        return row

    def _check_doc_number(self, number: Any, own_id: str | None) -> str:
        if not isinstance(number, (str, int)) or isinstance(number, bool):
            raise self._type_error("model/number", "number must be a string.")
        number = str(number).strip()
        if len(number) > 21:
            raise WriteError([provider_problem(QboError(
                "2050", "String length is either shorter or longer than supported by specification",
                f"String length specified does not match the supported length. Min:0 Max:21 supplied length:"
                f"{len(number)}", "DocNumber"), "model/number")])
        holder = self.doc_numbers.get(number.casefold())
        if self.unique_invoice_numbers and holder is not None and holder != own_id:
            raise WriteError([provider_problem(QboError(
                "6140", "Duplicate Document Number Error",
                f"Duplicate Document Number Error : You must specify a different number. This number has already "
                f"been used. DocNumber={number} is assigned to TxnType=Invoice with TxnId="
                f"{self.t('invoices').get(holder)['remote_id']}", "DocNumber"), "model/number")])
        return number

    def _auto_number(self) -> str:
        while str(self.next_doc_number).casefold() in self.doc_numbers:
            self.next_doc_number += 1
        value = str(self.next_doc_number)
        self.next_doc_number += 1
        return value

    def write_invoice(self, model: Any, existing: Row | None = None) -> tuple[Row, list[dict[str, Any]]]:
        """POST/PATCH /invoices with QBO's invoice rules (customer, >= 1 line with an amount, DocNumber)."""
        op = "PATCH invoices" if existing else "POST invoices"
        fields, warnings = self._screen(model, op)
        if isinstance(fields.get("line_items"), list):
            warnings += self._nested_warnings(fields["line_items"], LINE_FIELDS, "model/line_items")
        for key in ("status", "total_amount", "balance", "sub_total"):
            if key in fields:  # QBO computes these from the lines and the applied payments
                warnings.append(problem(f"model/{key}", "Read-only Field",
                                        f"{key} is computed by QuickBooks Online and was ignored.",
                                        "UNSUPPORTED_FIELD"))
        inv_type = fields.get("type", existing["type"] if existing else None)
        if inv_type not in ("ACCOUNTS_RECEIVABLE", "ACCOUNTS_PAYABLE"):
            raise WriteError([problem("model/type", "Invalid Field Choice",
                                      "type must be ACCOUNTS_RECEIVABLE or ACCOUNTS_PAYABLE.",
                                      "INVALID_FIELD_CHOICE")], warnings)
        if inv_type == "ACCOUNTS_PAYABLE":
            raise WriteError([problem("model/type", "Unsupported Operation",
                                      "The sandbox emulates invoices (ACCOUNTS_RECEIVABLE) only; bills are not "
                                      "supported.", "ERROR")], warnings)
        try:
            if existing is not None and existing["status"] == "VOID":
                raise WriteError([provider_problem(business_error("This transaction has been voided and can't be "
                                                                  "edited."))])
            contact_id = fields.get("contact", existing["contact"] if existing else None)
            contact = self._customer_ref(contact_id)
            if existing is not None and contact["id"] != existing["contact"] and existing["payments"]:
                raise WriteError([provider_problem(business_error(
                    "You can't change the customer of an invoice that has payments applied."), "model/contact")])
            lines = self._build_lines(fields["line_items"], contact["id"]) if "line_items" in fields or \
                existing is None else existing["line_items"]
            number = fields.get("number")
            number = self._check_doc_number(number, existing["id"] if existing else None) \
                if number not in (None, "") else (existing["number"] if existing else self._auto_number())
            issue = self._date_field(fields["issue_date"], "model/issue_date") if "issue_date" in fields else \
                (existing["issue_date"] if existing else today())
            issue = issue or today()
            due = self._date_field(fields["due_date"], "model/due_date") if "due_date" in fields else \
                (existing["due_date"] if existing else None)
            if due is None:
                due = (parse_dt(issue) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
            total = round(sum(line["total_amount"] for line in lines), 2)
            paid = round(existing["total_amount"] - existing["balance"], 2) if existing else 0.0
            if existing is not None and total + 0.001 < paid:
                raise WriteError([provider_problem(business_error(
                    f"The invoice total ({total:.2f}) can't be less than the payments applied ({paid:.2f})."),
                    "model/line_items")])
        except WriteError as exc:
            exc.warnings = warnings + exc.warnings
            raise
        values = {"type": inv_type, "contact": contact["id"], "number": number, "issue_date": issue,
                  "due_date": due, "memo": fields.get("memo", existing["memo"] if existing else None),
                  "currency": fields.get("currency") or (existing["currency"] if existing else "USD"),
                  "sub_total": total, "total_amount": total, "balance": round(total - paid, 2),
                  "line_items": lines, "total_tax_amount": 0.0,
                  "total_discount": existing["total_discount"] if existing else None}
        table = self.t("invoices")
        if existing is None:
            row = self._new_row("invoices", **values, paid_on_date=None, company=None, employee=None,
                                exchange_rate=None, payment_term=None, status="OPEN", remote_updated_at=None,
                                tracking_categories=[], accounting_period=None, purchase_orders=[],
                                sales_orders=[], payments=[], applied_payments=[], applied_credit_notes=[],
                                applied_vendor_credits=[], inclusive_of_tax=fields.get("inclusive_of_tax"))
            row["_sync_token"] = 0
            table.insert(row)
        else:
            row = existing
            if row["number"]:
                self.doc_numbers.pop(row["number"].casefold(), None)
            row.update(values)
            row["_sync_token"] += 1
        self.doc_numbers[number.casefold()] = row["id"]
        self._settle(row)
        if existing is not None:
            table.touch(row)
        for line in row["line_items"]:
            line["created_at"] = line["created_at"] or row["created_at"]
            line["modified_at"] = row["modified_at"]
        return row, warnings

    @staticmethod
    def _settle(invoice: Row) -> None:
        """Status and paid_on_date follow the balance (QBO has no explicit invoice status)."""
        if invoice["status"] == "VOID":
            return
        if invoice["balance"] <= 0.001:
            invoice["balance"] = 0.0
            invoice["status"] = "PAID"
            invoice["paid_on_date"] = invoice.get("_last_payment_date") or invoice["issue_date"]
        else:
            invoice["status"] = "PARTIALLY_PAID" if invoice["balance"] + 0.001 < invoice["total_amount"] else "OPEN"
            invoice["paid_on_date"] = None

    def void_invoice(self, invoice_id: str) -> Row:
        """Voiding in QBO zeroes the amounts and unapplies payments (they become unapplied credit)."""
        row = self.live("invoices", invoice_id)
        if row is None:
            raise KeyError(invoice_id)
        for payment_id in list(row["payments"]):
            payment = self.t("payments").get(payment_id)
            if payment is not None:
                self._unapply(payment, only_invoice=row["id"])
                self.t("payments").touch(payment)
        for line in row["line_items"]:
            line["total_amount"] = 0.0
            line["unit_price"] = 0.0 if line["unit_price"] is not None else None
        row.update(status="VOID", total_amount=0.0, sub_total=0.0, balance=0.0, paid_on_date=None,
                   memo=f"Voided{': ' + row['memo'] if row['memo'] else ''}")
        self.doc_numbers.pop(str(row["number"]).casefold(), None)
        self.t("invoices").touch(row)
        return row

    # --- payments ---------------------------------------------------------------------------------
    def _plan_applications(self, raw: Any, contact: Row, total: float) -> list[tuple[Row, float, str | None]]:
        """Validate applied_to_lines against live invoice balances; returns (invoice, amount, applied_date)."""
        if raw in (None, []):
            return []
        if not isinstance(raw, list):
            raise self._type_error("model/applied_to_lines", "applied_to_lines must be a list.")
        plan: list[tuple[Row, float, str | None]] = []
        per_invoice: dict[str, float] = {}
        for i, line in enumerate(raw):
            ptr = f"model/applied_to_lines/{i}"
            if not isinstance(line, dict):
                raise self._type_error(ptr, "applied_to_lines entries must be objects.")
            kind = line.get("related_object_type") or "INVOICE"
            if kind != "INVOICE":
                raise WriteError([problem(f"{ptr}/related_object_type", "Unsupported Operation",
                                          "The sandbox applies payments to invoices only.", "ERROR")])
            invoice = self.live("invoices", line.get("related_object_id"))
            if invoice is None or invoice["status"] == "VOID":
                raise WriteError([provider_problem(invalid_reference("LinkedTxn", line.get("related_object_id")),
                                                   f"{ptr}/related_object_id")])
            if invoice["contact"] != contact["id"]:
                raise WriteError([provider_problem(business_error(
                    f"Invoice {invoice['number']} belongs to a different customer than this payment.",
                    "LinkedTxn"), f"{ptr}/related_object_id")])
            if line.get("applied_amount") in (None, ""):
                raise WriteError([problem(f"{ptr}/applied_amount", "Missing Required Field",
                                          "applied_amount is a required field.", "MISSING_REQUIRED_FIELD")])
            amount = self._money_field(line["applied_amount"], f"{ptr}/applied_amount")
            if amount <= 0:
                raise WriteError([provider_problem(business_error("Applied amounts must be greater than zero."),
                                                   f"{ptr}/applied_amount")])
            per_invoice[invoice["id"]] = round(per_invoice.get(invoice["id"], 0.0) + amount, 2)
            if per_invoice[invoice["id"]] > invoice["balance"] + 0.001:
                raise WriteError([provider_problem(business_error(
                    f"The amount applied ({per_invoice[invoice['id']]:.2f}) is more than the open balance "
                    f"({invoice['balance']:.2f}) of invoice {invoice['number']}.", "Line.Amount"),
                    f"{ptr}/applied_amount")])
            plan.append((invoice, amount, self._date_field(line.get("applied_date"), f"{ptr}/applied_date")))
        if round(sum(a for _, a, _ in plan), 2) > total + 0.001:
            raise WriteError([provider_problem(business_error(
                f"The amounts applied ({sum(a for _, a, _ in plan):.2f}) exceed the payment total ({total:.2f}).",
                "TotalAmt"), "model/applied_to_lines")])
        return plan

    def _apply(self, payment: Row, plan: list[tuple[Row, float, str | None]]) -> None:
        ts = now_us()
        for invoice, amount, applied_date in plan:
            line = {"id": str(uuid.uuid4()), "remote_id": None, "created_at": iso(ts), "modified_at": iso(ts),
                    "applied_amount": f"{amount:.2f}", "applied_date": applied_date or payment["transaction_date"],
                    "related_object_id": invoice["id"], "related_object_type": "INVOICE"}
            self.payment_lines[line["id"]] = line
            payment["applied_to_lines"].append(line)
            invoice["balance"] = round(invoice["balance"] - amount, 2)
            if payment["id"] not in invoice["payments"]:
                invoice["payments"].append(payment["id"])
            invoice["applied_payments"].append(line["id"])
            invoice["_last_payment_date"] = payment["transaction_date"]
            self._settle(invoice)
            self.t("invoices").touch(invoice)

    def _unapply(self, payment: Row, only_invoice: str | None = None) -> None:
        """Reverse a payment's applications (all, or those on one invoice): balances reopen."""
        keep: list[Row] = []
        touched: dict[str, Row] = {}
        for line in payment["applied_to_lines"]:
            invoice = self.t("invoices").get(line["related_object_id"])
            if invoice is None or (only_invoice and invoice["id"] != only_invoice):
                keep.append(line)
                continue
            invoice["balance"] = round(invoice["balance"] + float(line["applied_amount"]), 2)
            if line["id"] in invoice["applied_payments"]:
                invoice["applied_payments"].remove(line["id"])
            touched[invoice["id"]] = invoice
        payment["applied_to_lines"] = keep
        for invoice in touched.values():
            if payment["id"] in invoice["payments"] and \
                    not any(ln["related_object_id"] == invoice["id"] for ln in keep):
                invoice["payments"].remove(payment["id"])
            self._settle(invoice)
            self.t("invoices").touch(invoice)

    def write_payment(self, model: Any, existing: Row | None = None) -> tuple[Row, list[dict[str, Any]]]:
        """POST/PATCH /payments: required fields, then QBO rules, then invoice balances/status move."""
        op = "PATCH payments" if existing else "POST payments"
        fields, warnings = self._screen(model, op)
        if isinstance(fields.get("applied_to_lines"), list):
            warnings += self._nested_warnings(fields["applied_to_lines"], APPLIED_FIELDS, "model/applied_to_lines")
        try:
            total = self._money_field(fields["total_amount"], "model/total_amount") if "total_amount" in fields \
                else existing["total_amount"]
            txn_date = self._date_field(fields["transaction_date"], "model/transaction_date") \
                if "transaction_date" in fields else existing["transaction_date"]
            if total <= 0:
                raise WriteError([provider_problem(business_error("The payment amount must be greater than zero.",
                                                                  "TotalAmt"), "model/total_amount")])
            contact = self._customer_ref(fields.get("contact", existing["contact"] if existing else None))
            account_id = fields.get("account", existing["account"] if existing else None)
            if self.live("accounts", account_id) is None:
                raise WriteError([provider_problem(invalid_reference("DepositToAccountRef", account_id),
                                                   "model/account")])
            old_lines = [] if existing is None else [
                {"applied_amount": ln["applied_amount"], "applied_date": ln["applied_date"],
                 "related_object_id": ln["related_object_id"], "related_object_type": ln["related_object_type"]}
                for ln in existing["applied_to_lines"]]
            if existing is not None:
                self._unapply(existing)
            try:
                raw = fields.get("applied_to_lines", old_lines)
                plan = self._plan_applications(raw, contact, total)
            except WriteError:
                if existing is not None:  # put the old applications back
                    self._apply(existing, self._plan_applications(old_lines, self.t("contacts").get(
                        existing["contact"]), existing["total_amount"]))
                raise
        except WriteError as exc:
            exc.warnings = warnings + exc.warnings
            raise
        values = {"transaction_date": txn_date, "contact": contact["id"], "account": account_id,
                  "currency": fields.get("currency") or (existing["currency"] if existing else "USD"),
                  "total_amount": total}
        if existing is None:
            row = self._new_row("payments", **values, payment_method=None, exchange_rate=None, company=None,
                                type="ACCOUNTS_RECEIVABLE", tracking_categories=[], accounting_period=None,
                                applied_to_lines=[], remote_updated_at=None)
            self.t("payments").insert(row)
        else:
            row = existing
            row.update(values)
            self.t("payments").touch(row)
        self._apply(row, plan)
        return row, warnings

    # --- deletes (things done directly in QuickBooks) ---------------------------------------------
    def delete(self, table: str, id_: str) -> Row:
        row = self.t(table).get(id_)
        if row is None:
            raise KeyError(id_)
        if table == "payments":
            self._unapply(row)
        if table == "invoices":
            self.doc_numbers.pop(str(row["number"]).casefold(), None)
        if table == "contacts":
            self.qbo.names.pop(norm_name(str(row["name"])), None)
            self.qbo.entities.get(row.get("_entity", "Customer"), {}).pop(row["remote_id"], None)
        row["remote_was_deleted"] = True
        self.t(table).touch(row)
        return row

    # --- QBO-shaped views (remote_data, passthrough queries) --------------------------------------
    def qbo_view(self, table: str, row: Row) -> tuple[str, dict[str, Any]]:
        """(remote_data path, QBO object) for a row."""
        def ref(tbl: str, id_: Any) -> dict[str, Any] | None:
            target = self.t(tbl).get(id_) if id_ else None
            return {"value": target["remote_id"], "name": target.get("name")} if target else None

        meta = {"CreateTime": row["created_at"], "LastUpdatedTime": row["modified_at"]}
        if table == "contacts":
            entity = row.get("_entity", "Customer")
            obj = self.qbo.get(entity, row["remote_id"])
            return f"/{entity.lower()}", copy.deepcopy(obj) if obj else {"Id": row["remote_id"]}
        if table == "invoices":
            contact = self.t("contacts").get(row["contact"])
            lines: list[dict[str, Any]] = [
                {"Id": ln["remote_id"], "LineNum": n + 1, "Description": ln["description"],
                 "Amount": ln["total_amount"], "DetailType": "SalesItemLineDetail",
                 "SalesItemLineDetail": {"ItemRef": ref("items", ln["item"]), "UnitPrice": ln["unit_price"],
                                         "Qty": ln["quantity"]}} for n, ln in enumerate(row["line_items"])]
            lines.append({"Amount": row["sub_total"], "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}})
            return "/invoice", {
                "Id": row["remote_id"], "SyncToken": str(row.get("_sync_token", 0)), "DocNumber": row["number"],
                "TxnDate": (row["issue_date"] or "")[:10], "DueDate": (row["due_date"] or "")[:10],
                "CustomerRef": {"value": contact["remote_id"], "name": contact["name"]} if contact else None,
                "Line": lines, "TotalAmt": row["total_amount"], "Balance": row["balance"],
                "PrivateNote": row["memo"], "CurrencyRef": {"value": row["currency"]},
                "LinkedTxn": [{"TxnId": self.t("payments").get(p)["remote_id"], "TxnType": "Payment"}
                              for p in row["payments"] if self.t("payments").get(p)],
                "MetaData": meta, "domain": "QBO", "sparse": False}
        if table == "payments":
            contact = self.t("contacts").get(row["contact"])
            applied = sum(float(ln["applied_amount"]) for ln in row["applied_to_lines"])
            return "/payment", {
                "Id": row["remote_id"], "SyncToken": "0", "TxnDate": (row["transaction_date"] or "")[:10],
                "TotalAmt": row["total_amount"], "UnappliedAmt": round(row["total_amount"] - applied, 2),
                "CustomerRef": {"value": contact["remote_id"], "name": contact["name"]} if contact else None,
                "DepositToAccountRef": ref("accounts", row["account"]),
                "Line": [{"Amount": float(ln["applied_amount"]),
                          "LinkedTxn": [{"TxnId": self.t("invoices").get(ln["related_object_id"])["remote_id"],
                                         "TxnType": "Invoice"}]} for ln in row["applied_to_lines"]],
                "MetaData": meta, "domain": "QBO", "sparse": False}
        if table == "items":
            return "/item", {"Id": row["remote_id"], "Name": row["name"], "FullyQualifiedName": row["name"],
                             "Type": {"SERVICE": "Service", "INVENTORY": "Inventory"}.get(row["type"], "NonInventory"),
                             "UnitPrice": row["unit_price"] or 0, "Active": row["status"] == "ACTIVE",
                             "IncomeAccountRef": ref("accounts", row["sales_account"]), "MetaData": meta}
        if table == "accounts":
            return "/account", {"Id": row["remote_id"], "Name": row["name"], "AccountType": row["type"],
                                "Classification": (row["classification"] or "").title(),
                                "Active": row["status"] == "ACTIVE", "CurrentBalance": row["current_balance"],
                                "MetaData": meta}
        return "/companyinfo", {"Id": row["remote_id"], "CompanyName": row["name"], "LegalName": row["legal_name"],
                                "Country": "US", "MetaData": meta}

    def _qbo_entities(self, entity: str) -> Iterable[dict[str, Any]] | None:
        table = {"Invoice": "invoices", "Payment": "payments", "Item": "items", "Account": "accounts",
                 "CompanyInfo": "company-info"}.get(entity)
        if table is None:
            return None
        return (self.qbo_view(table, row)[1] for row in self.t(table).order if not row["remote_was_deleted"])

    # --- serialization ----------------------------------------------------------------------------
    def serialize(self, table: str, row: Row, *, expand: set[str] = frozenset(),  # type: ignore[assignment]
                  remote_data: bool = False, remote_fields: bool = False) -> dict[str, Any]:
        """Public JSON of a row: relations as ids unless expanded; remote_data only when asked."""
        out = {k: copy.deepcopy(v) for k, v in row.items() if not k.startswith("_")}
        if table == "invoices":
            if "contact" in expand and out["contact"]:
                out["contact"] = self.serialize("contacts", self.t("contacts").get(out["contact"]))
            if "payments" in expand:
                out["payments"] = [self.serialize("payments", self.t("payments").get(p)) for p in out["payments"]]
            if "applied_payments" in expand:
                out["applied_payments"] = [copy.deepcopy(self.payment_lines[p]) for p in out["applied_payments"]]
        elif table == "payments":
            if "contact" in expand and out["contact"]:
                out["contact"] = self.serialize("contacts", self.t("contacts").get(out["contact"]))
            if "account" in expand and out["account"]:
                out["account"] = self.serialize("accounts", self.t("accounts").get(out["account"]))
        elif table == "items":
            for key in ("sales_account", "purchase_account"):
                if key in expand and out[key]:
                    out[key] = self.serialize("accounts", self.t("accounts").get(out[key]))
        if "company" in expand and out.get("company") is None and table != "company-info":
            pass  # QBO linked accounts have a single company; Merge leaves `company` null for QBO
        if remote_data:
            path, data = self.qbo_view(table, row)
            out["remote_data"] = [{"path": path, "data": data}]
        else:
            out["remote_data"] = None
        if remote_fields and table in ("contacts", "invoices", "payments"):
            out["remote_fields"] = []
        return out
