"""QBO Faults of the emulated QuickBooks Online company: the error type and the errors Intuit answers with.

Why apart: the company's records (merge_qbo_entities), its passthrough and query language (merge_qbo,
merge_qbo_query) and Merge's write rules (merge_invoices, merge_payments, ...) all raise these, so the exact
codes and wording live in one place. Every name is still importable from `sandbox.merge_qbo`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def qbo_time() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class QboError(Exception):
    """A QBO Fault: code/message/detail as Intuit returns them (HTTP 400 unless `status` says otherwise)."""

    def __init__(
        self,
        code: str,
        message: str,
        detail: str,
        element: str = "",
        fault_type: str = "ValidationFault",
        status: int = 400,
    ) -> None:
        super().__init__(f"{message}: {detail}")
        self.code, self.message, self.detail, self.element = code, message, detail, element
        self.fault_type, self.status = fault_type, status

    def fault(self) -> dict[str, Any]:
        return {
            "Fault": {
                "Error": [{"Message": self.message, "Detail": self.detail, "code": self.code, "element": self.element}],
                "type": self.fault_type,
            },
            "time": qbo_time(),
        }


def duplicate_name(name: str) -> QboError:
    return QboError(
        "6240",
        "Duplicate Name Exists Error",
        f"The name supplied already exists. : Another customer, vendor or employee is already using "
        f"this name. Please use a different name. Name: {name}",
        "DisplayName",
    )


def invalid_reference(what: str, value: Any) -> QboError:
    return QboError(
        "2500",
        "Invalid Reference Id",
        f"Invalid Reference Id : {what} assigned to this transaction has been deleted or does not "
        f"exist. Reference: {value}",
        what,
    )


def missing_param(name: str) -> QboError:
    return QboError(
        "2020",
        "Required param missing, need to supply the required value for the API",
        f"Required parameter {name} is missing in the request",
        name,
    )


def business_error(detail: str, element: str = "") -> QboError:
    return QboError(
        "6000",
        "A business validation error has occurred while processing your request",
        f"Business Validation Error: {detail}",
        element,
    )


def deposited_transaction() -> QboError:
    """6540: a payment that is on a bank deposit cannot be changed, voided or deleted until it is taken off it
    (Intuit's error-code list; the wording is QuickBooks' UI message)."""
    return QboError(
        "6540",
        "Deposited Transaction cannot be changed",
        "This transaction has been deposited. If you want to change or delete it, you must edit the deposit it "
        "appears on and remove it first.",
    )


def object_not_found(entity: str, id_: Any, element: str = "") -> QboError:
    return QboError(
        "610",
        "Object Not Found",
        f"Object Not Found : Something you're trying to use has been made inactive or deleted. {entity} Id: {id_}",
        element,
    )


def stale_object() -> QboError:
    """5010: the request's SyncToken is not the object's current one (someone changed it since it was read)."""
    return QboError(
        "5010",
        "Stale Object Error",
        "Stale Object Error : You and sandbox were working on this at the same time. sandbox "
        "finished before you did, so your work was not saved.",
        "SyncToken",
    )


def invalid_property(detail: str) -> QboError:
    return QboError("2010", "Request has invalid or unsupported property", detail)


def unsupported_operation(detail: str) -> QboError:
    return QboError("4001", "Unsupported Operation", detail)


def query_error(detail: str) -> QboError:
    return QboError("4000", "Error parsing query", f"QueryParserError: {detail}")
