"""The emulated QuickBooks Online company behind the Merge sandbox: name rules, customers/jobs, passthrough.

Merge writes (POST /contacts) and passthrough calls (POST .../customer) both land here, so the QBO rules
(DisplayName unique across customers, jobs, vendors and employees; no colon; SyncToken; 5 levels) hold for both
paths. Which Ids QBO hands out and whether it has employees follow the app's `MergeAssumptions`.

This module is the company as Merge's passthrough reaches it (`QboCompany.passthrough`, `.query`). Below it:
`merge_qbo_entities` (`QboEntities`, its base: the records, Id counters, the DisplayName registry, the job tree),
`merge_qbo_query` (the query language) and `merge_qbo_faults` (`QboError` and Intuit's error wording).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from sandbox.merge_purchases import Purchases
from sandbox.merge_qbo_entities import MAX_LEVEL, READ_ONLY, QboEntities, norm_name
from sandbox.merge_qbo_faults import (
    QboError,
    business_error,
    duplicate_name,
    invalid_property,
    invalid_reference,
    missing_param,
    object_not_found,
    qbo_time,
    unsupported_operation,
)
from sandbox.merge_qbo_query import Source, run_query
from sandbox.merge_refunds import RefundReceipts

#: Names this module had before the split and still serves.
__all__ = [
    "MAX_LEVEL",
    "READ_ONLY",
    "REALM_TEMPLATE",
    "QboCompany",
    "QboError",
    "business_error",
    "duplicate_name",
    "invalid_reference",
    "missing_param",
    "norm_name",
    "qbo_time",
]

REALM_TEMPLATE = "{{LINKED_ACCOUNT_ATTR.realmId}}"
#: Transactions whose passthrough reads and voids the Merge app answers (`QboCompany.transactions`).
TRANSACTIONS = ("Invoice", "Payment")
#: Read-only QBO entities of the company's setup that `GET .../<entity>/{Id}` (and `GET .../preferences`) serve.
SETUP_READS = {"taxcode": "TaxCode", "taxrate": "TaxRate", "preferences": "Preferences"}


class Transactions(Protocol):
    """What the company asks of the Merge app for invoices and payments (sandbox/merge_voids.QboTransactions)."""

    def read(self, entity: str, id_: str) -> dict[str, Any]: ...

    def post(self, entity: str, query: dict[str, list[str]], body: Any) -> dict[str, Any]: ...


_PATH = re.compile(r"^/v3/company/([^/]+)/(.+?)/?$")
_RESOURCE = re.compile(r"^(\w+?)(?:/(\w+))?$")


class QboCompany(QboEntities):
    """One QBO company (realm): its records (`QboEntities`), answering raw QBO API calls as Merge passes them."""

    def __init__(
        self, realm_id: str, *, max_name_length: int = 100, separate_id_spaces: bool = False, employees: bool = False
    ) -> None:
        super().__init__(max_name_length=max_name_length, separate_id_spaces=separate_id_spaces, employees=employees)
        self.realm_id = realm_id
        # hook set by the Merge app: the QBO objects of an entity that is not a name entity (Invoice, Item, ...)
        self.other_entities: Callable[[str], Iterable[dict[str, Any]] | None] = lambda entity: None
        # hook set by the Merge app: invoice/payment reads and voids (None: not emulated, 4001)
        self.transactions: Transactions | None = None
        # hook set by the Merge app: how QBO spells an entity in a QueryResponse (`TaxCode` for `taxcode`)
        self.entity_name: Callable[[str], str] = lambda entity: entity
        # refund receipts (sandbox/merge_refunds.py): Merge's common models have none
        self.refund_receipts = RefundReceipts(self._others, partial(self.get, "Customer"))
        # checks and cash expenses (sandbox/merge_credit_refunds.py): a refunded credit's check to A/R
        self.purchases = Purchases(self._others, partial(self.get, "Customer"))

    def _others(self, entity: str) -> Iterable[dict[str, Any]] | None:
        """`other_entities` as the Merge app sets it later (read at call time)."""
        return self.other_entities(entity)

    # --- passthrough ------------------------------------------------------------------------------
    def passthrough(self, method: str, path: str, data: str | None) -> tuple[int, Any]:
        """Answer one raw QBO API call. Returns (HTTP status, parsed JSON body)."""
        parts = urlsplit(path.replace(REALM_TEMPLATE, self.realm_id))
        m = _PATH.match(unquote(parts.path))
        if not m:
            return 404, {
                "Fault": {
                    "Error": [{"Message": "Unsupported path", "Detail": parts.path, "code": "0"}],
                    "type": "ServiceFault",
                },
                "time": qbo_time(),
            }
        if m.group(1) != self.realm_id:
            return 403, QboError(
                "003100",
                "ApplicationAuthorizationFailed",
                "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
                fault_type="AUTHENTICATION",
            ).fault()
        resource = m.group(2)
        query = parse_qs(parts.query)
        try:
            body = json.loads(data) if data else {}
        except json.JSONDecodeError:
            return 400, invalid_property("Request body is not valid JSON").fault()
        try:
            return self._answer(method, resource, query, body, data)
        except QboError as exc:
            return exc.status, exc.fault()

    def _answer(
        self, method: str, resource: str, query: dict[str, list[str]], body: Any, data: str | None
    ) -> tuple[int, Any]:
        """A call to `resource` of this company: a query, CompanyInfo, or GET/POST of a name entity."""
        if resource == "query":
            texts = query.get("query")
            text = texts[0] if texts else None
            if text is None and method == "POST":
                text = data
            return 200, self.query(text or "")
        if method == "GET" and resource.lower() == f"companyinfo/{self.realm_id}":  # QBO: Id = the realm id
            info = next(iter(self.other_entities("CompanyInfo") or ()), None)
            if info is not None:
                return 200, {"CompanyInfo": {**info, "Id": self.realm_id}, "time": qbo_time()}
        entity_match = _RESOURCE.match(resource)
        if method == "POST" and resource.lower() == "refundreceipt":
            return 200, {"RefundReceipt": self.refund_receipts.create(body), "time": qbo_time()}
        if method == "POST" and resource.lower() == "purchase":
            return 200, {"Purchase": self.purchases.create(body), "time": qbo_time()}
        setup = self._setup_read(method, entity_match)
        if setup is not None:
            return setup
        transaction = entity_match.group(1).capitalize() if entity_match else ""
        if entity_match and transaction in TRANSACTIONS and self.transactions is not None:
            if method == "GET" and entity_match.group(2):
                return 200, {
                    transaction: self.transactions.read(transaction, entity_match.group(2)),
                    "time": qbo_time(),
                }
            if method == "POST" and not entity_match.group(2):
                return 200, {transaction: self.transactions.post(transaction, query, body), "time": qbo_time()}
        if not entity_match or entity_match.group(1).capitalize() not in self.name_entities:
            return 400, unsupported_operation(f"Operation {method} {resource} is not supported by the sandbox").fault()
        entity = entity_match.group(1).capitalize()
        if method == "GET" and entity_match.group(2):
            obj = self.get(entity, entity_match.group(2))
            if obj is None:
                raise object_not_found(entity, entity_match.group(2))
            return 200, {entity: copy.deepcopy(obj), "time": qbo_time()}
        if method == "POST" and not entity_match.group(2):
            if not isinstance(body, dict):
                raise invalid_property("Body must be an object")
            obj = self.update(entity, body) if body.get("Id") else self.create(entity, body)
            return 200, {entity: copy.deepcopy(obj), "time": qbo_time()}
        return 400, unsupported_operation(f"{method} {resource} is not supported").fault()

    def _setup_read(self, method: str, entity_match: re.Match[str] | None) -> tuple[int, Any] | None:
        """`GET .../taxcode/{Id}`, `.../taxrate/{Id}` and `.../preferences`: the company's tax setup (else None)."""
        if method != "GET" or entity_match is None or entity_match.group(1).lower() not in SETUP_READS:
            return None
        entity = SETUP_READS[entity_match.group(1).lower()]
        objects = list(self.other_entities(entity) or ())
        wanted = entity_match.group(2) or ("1" if entity == "Preferences" else None)  # one Preferences, Id 1
        found = next((o for o in objects if o.get("Id") == wanted), None)
        if found is None:
            raise object_not_found(entity, entity_match.group(2))
        return 200, {entity: copy.deepcopy(found), "time": qbo_time()}

    # --- query language ---------------------------------------------------------------------------
    def query(self, text: str) -> dict[str, Any]:
        """A small subset of QBO's SQL-like query language: select */count(*) from X [where a = 'v' and ...]."""
        return run_query(text, self._query_source)

    def _query_source(self, entity: str) -> Source | None:
        """The objects a query of `entity` reads: a name entity's records, or what the Merge app holds."""
        if entity.casefold() == "refundreceipt":
            return "RefundReceipt", self.refund_receipts.records
        if entity.casefold() == "purchase":
            return "Purchase", ({k: v for k, v in p.items() if not k.startswith("_")} for p in self.purchases.records)
        if entity.capitalize() in self.name_entities:
            entity = entity.capitalize()
            return entity, self.entities[entity].values()
        source = self.other_entities(entity)
        return None if source is None else (self.entity_name(entity), source)
