"""Merge sandbox views of a row: its public JSON (with `expand` and `remote_data`) and its QBO object.

Why together: `remote_data` of a common-model row is its QBO-shaped view, and passthrough queries over invoices,
payments, items and accounts read the same views, so Merge's and QBO's pictures of a record never drift apart.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from typing import Any

from sandbox.merge_credit_notes import qbo_view as credit_note_view
from sandbox.merge_store import Row
from sandbox.merge_tables import MergeTables
from sandbox.merge_tracking import qbo_view as tracking_view


def qbo_view(data: MergeTables, table: str, row: Row) -> tuple[str, dict[str, Any]]:
    """(remote_data path, QBO object) for a row."""

    def ref(tbl: str, id_: Any) -> dict[str, Any] | None:
        target = data.t(tbl).get(id_) if id_ else None
        return {"value": target["remote_id"], "name": target.get("name")} if target else None

    meta = {"CreateTime": row["created_at"], "LastUpdatedTime": row["modified_at"]}
    if table == "contacts":
        entity = row.get("_entity", "Customer")
        obj = data.qbo.get(entity, row["remote_id"])
        return f"/{entity.lower()}", copy.deepcopy(obj) if obj else {"Id": row["remote_id"]}
    if table == "invoices":
        contact = data.t("contacts").get(row["contact"])
        lines: list[dict[str, Any]] = [
            {
                "Id": ln["remote_id"],
                "LineNum": n + 1,
                "Description": ln["description"],
                "Amount": ln["total_amount"],
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {
                    "ItemRef": ref("items", ln["item"]),
                    "UnitPrice": ln["unit_price"],
                    "Qty": ln["quantity"],
                    **tax_code_ref(data, ln),
                },
            }
            for n, ln in enumerate(row["line_items"])
        ]
        lines.append({"Amount": row["sub_total"], "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}})
        taxes: dict[str, Any] = {}
        if data.tax.computes_tax:  # us_manual keeps the original view: no tax detail at all
            detail: dict[str, Any] = {
                "TotalTax": row.get("total_tax_amount") or 0.0,
                "TaxLine": row.get("_tax_lines", []),
            }
            if data.tax.ast_code and row["status"] != "VOID":
                detail = {"TxnTaxCodeRef": {"value": data.tax.ast_code}, **detail}
            taxes = {"TxnTaxDetail": detail, "GlobalTaxCalculation": "TaxExcluded"}
        return "/invoice", {
            "Id": row["remote_id"],
            "SyncToken": str(row.get("_sync_token", 0)),
            "DocNumber": row["number"],
            "TxnDate": (row["issue_date"] or "")[:10],
            "DueDate": (row["due_date"] or "")[:10],
            "CustomerRef": {"value": contact["remote_id"], "name": contact["name"]} if contact else None,
            "Line": lines,
            "TotalAmt": row["total_amount"],
            "Balance": row["balance"],
            "PrivateNote": row["memo"],
            "CurrencyRef": {"value": row["currency"]},
            **taxes,
            "LinkedTxn": [
                {"TxnId": payment["remote_id"], "TxnType": "Payment"}
                for payment in map(data.t("payments").get, row["payments"])
                if payment
            ],
            "MetaData": meta,
            "domain": "QBO",
            "sparse": False,
        }
    if table == "payments":
        contact = data.t("contacts").get(row["contact"])
        links = [_linked_txn(data, ln) for ln in row["applied_to_lines"]]
        links += [
            {"Amount": e["Amount"], "LinkedTxn": [{"TxnId": e["TxnId"], "TxnType": e["TxnType"]}]}
            for e in row.get("_linked_expenses") or ()
        ]  # checks a payment of 0 links to credit memos
        applied = sum(ln["Amount"] * (-1 if ln["LinkedTxn"][0]["TxnType"] == "CreditMemo" else 1) for ln in links)
        note = {"PrivateNote": row["_private_note"]} if row.get("_private_note") else {}
        if row.get("_payment_ref_num"):
            note["PaymentRefNum"] = row["_payment_ref_num"]
        return "/payment", {
            "Id": row["remote_id"],
            "SyncToken": str(row.get("_sync_token", 0)),
            "TxnDate": (row["transaction_date"] or "")[:10],
            "TotalAmt": row["total_amount"],
            "UnappliedAmt": round(row["total_amount"] - applied, 2),
            "CustomerRef": {"value": contact["remote_id"], "name": contact["name"]} if contact else None,
            "DepositToAccountRef": ref("accounts", row["account"]),
            "Line": links,
            **note,
            "MetaData": meta,
            "domain": "QBO",
            "sparse": False,
        }
    if table == "items":
        taxable = {"Taxable": row.get("_taxable", True)} if data.tax.country == "US" and data.tax.computes_tax else {}
        return "/item", {
            "Id": row["remote_id"],
            "Name": row["name"],
            "FullyQualifiedName": row["name"],
            "Type": {"SERVICE": "Service", "INVENTORY": "Inventory"}.get(row["type"], "NonInventory"),
            "UnitPrice": row["unit_price"] or 0,
            "Active": row["status"] == "ACTIVE",
            "IncomeAccountRef": ref("accounts", row["sales_account"]),
            **taxable,
            "MetaData": meta,
        }
    if table == "accounts":
        return "/account", {
            "Id": row["remote_id"],
            "Name": row["name"],
            "AccountType": row["type"],
            "Classification": (row["classification"] or "").title(),
            "Active": row["status"] == "ACTIVE",
            "CurrentBalance": row["current_balance"],
            "MetaData": meta,
        }
    if table == "credit-notes":
        return credit_note_view(data, row)
    if table == "tracking-categories":
        return tracking_view(row)
    if table == "tax-rates":
        return "/taxcode", copy.deepcopy(data.tax.code(row["remote_id"]) or {"Id": row["remote_id"]})
    return "/companyinfo", {
        "Id": row["remote_id"],
        "CompanyName": row["name"],
        "LegalName": row["legal_name"],
        "Country": data.tax.country,
        "MetaData": meta,
    }


def _linked_txn(data: MergeTables, line: Row) -> dict[str, Any]:
    """QuickBooks' Payment line of one of Merge's applied lines (an invoice, or a credit memo a payment of 0 uses)."""
    credit = line.get("related_object_type") == "CREDIT_NOTE"
    linked = data.t("credit-notes" if credit else "invoices").row(line["related_object_id"])
    txn = {"TxnId": linked["remote_id"], "TxnType": "CreditMemo" if credit else "Invoice"}
    return {"Amount": float(line["applied_amount"]), "LinkedTxn": [txn]}


def tax_code_ref(data: MergeTables, line: Row) -> dict[str, Any]:
    """`TaxCodeRef` of an invoice line whose Merge `tax_rate` names a TaxRate (none: no key, as before)."""
    rate = data.t("tax-rates").get(line.get("tax_rate"))
    return {"TaxCodeRef": {"value": rate["remote_id"]}} if rate is not None else {}


#: QBO entity names (as a query or a read path spells them, case-insensitively) -> the table holding them
QBO_TABLES = {
    "invoice": "invoices",
    "payment": "payments",
    "item": "items",
    "account": "accounts",
    "companyinfo": "company-info",
    "creditmemo": "credit-notes",
}
#: QBO entities that are the company's tax setup, not Merge rows: canonical spelling
QBO_SETUP = {"taxcode": "TaxCode", "taxrate": "TaxRate", "preferences": "Preferences"}


def qbo_entity_name(entity: str) -> str:
    """The canonical spelling of a QBO entity name (`taxcode` -> `TaxCode`), or the name as given."""
    key = entity.casefold()
    if key in QBO_SETUP:
        return QBO_SETUP[key]
    canonical = {"invoice": "Invoice", "payment": "Payment", "item": "Item", "account": "Account"}
    return canonical.get(key, "CompanyInfo" if key == "companyinfo" else entity)


def qbo_entities(data: MergeTables, entity: str) -> Iterable[dict[str, Any]] | None:
    """Every live object of a QBO entity the common models hold, or of the company's tax setup (TaxCode,
    TaxRate, Preferences): what passthrough queries and reads see. None: not an entity the sandbox has."""
    key = entity.casefold()
    if key in QBO_SETUP:
        return data.tax.qbo_objects(QBO_SETUP[key])
    table = QBO_TABLES.get(key)
    if table is None:
        return None
    return (qbo_view(data, table, row)[1] for row in data.t(table).order if not row["remote_was_deleted"])


def serialize(
    data: MergeTables,
    table: str,
    row: Row,
    *,
    expand: AbstractSet[str] = frozenset(),
    remote_data: bool = False,
    remote_fields: bool = False,
) -> dict[str, Any]:
    """Public JSON of a row (Merge's copy of it while a QuickBooks change waits for Merge's next sync): relations
    as ids unless expanded; remote_data only when asked."""
    row = data.merge_copy(row)
    out = {k: copy.deepcopy(v) for k, v in row.items() if not k.startswith("_")}
    if table == "invoices":
        if "contact" in expand and out["contact"]:
            out["contact"] = serialize(data, "contacts", data.t("contacts").row(out["contact"]))
        if "payments" in expand:
            out["payments"] = [serialize(data, "payments", data.t("payments").row(p)) for p in out["payments"]]
        if "applied_payments" in expand:
            out["applied_payments"] = [copy.deepcopy(data.payment_lines[p]) for p in out["applied_payments"]]
    elif table == "payments":
        if "contact" in expand and out["contact"]:
            out["contact"] = serialize(data, "contacts", data.t("contacts").row(out["contact"]))
        if "account" in expand and out["account"]:
            out["account"] = serialize(data, "accounts", data.t("accounts").row(out["account"]))
    elif table == "items":
        for key in ("sales_account", "purchase_account"):
            if key in expand and out[key]:
                out[key] = serialize(data, "accounts", data.t("accounts").row(out[key]))
    if "company" in expand and out.get("company") is None and table != "company-info":
        pass  # QBO linked accounts have a single company; Merge leaves `company` null for QBO
    if remote_data:
        path, qbo_obj = qbo_view(data, table, row)
        out["remote_data"] = [{"path": path, "data": qbo_obj}]
    else:
        out["remote_data"] = None
    if remote_fields and table in ("contacts", "invoices", "payments"):
        out["remote_fields"] = []
    return out
