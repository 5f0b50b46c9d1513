"""The QuickBooks side of a void: read the record, void it through passthrough, exactly once whatever becomes of
the answers (the policies that decide a void are in voids.py and payment_voids.py; void_writes.py plans and
records it)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .merge_client import MergeClient, QboFault, WriteError

#: QuickBooks' "Stale Object Error": the record changed since its SyncToken was read.
STALE_OBJECT = "5010"
#: Voids sent for one record in one run at most; after a lost answer the record is read before another is sent.
VOID_SENDS = 3


def is_voided(record: Mapping[str, Any]) -> bool:
    """QuickBooks shows a void only in the record: amounts zero and "Voided" prepended to PrivateNote (Intuit Invoice
    reference; blog 2016-04-06 "Voiding Invoice Objects"). ASSUMPTION: no live invoice looks like that."""
    try:
        total = Decimal(str(record.get("TotalAmt") or 0))
    except InvalidOperation:
        return False
    return total == 0 and str(record.get("PrivateNote") or "").startswith("Voided")


def applied_payments(invoice: Mapping[str, Any]) -> tuple[str, ...]:
    """QuickBooks Ids of the payments applied to a QuickBooks invoice (its LinkedTxn)."""
    return tuple(
        str(t.get("TxnId"))
        for t in invoice.get("LinkedTxn") or []
        if isinstance(t, dict) and t.get("TxnType") == "Payment" and t.get("TxnId")
    )


@dataclass(frozen=True)
class VoidAnswer:
    """What QuickBooks shows after a void. `sent`: this call voided it; `lost`: a void of ours whose answer was lost
    (QuickBooks shows it voided); `recovered`: one an interrupted run sent but did not record; none of them: voided
    before, by the bookkeeper. `payments`: applied before the void (QuickBooks leaves them as unapplied credit)."""

    qbo_id: str
    record: dict[str, Any]
    payments: tuple[str, ...] = ()
    sent: bool = False
    lost: bool = False
    recovered: bool = False
    deleted: bool = False
    request_id: str | None = None


class VoidRefused(WriteError):
    """QuickBooks refused a void; `payments`: the QuickBooks payments applied to the invoice (named in the reason)."""

    def __init__(self, fault: WriteError, qbo_id: str, payments: tuple[str, ...]) -> None:
        super().__init__(fault.detail, status=fault.status, request_id=fault.request_id)
        self.qbo_id = qbo_id
        self.payments = payments


class QboVoider:
    """Voids one QuickBooks transaction exactly once, whatever becomes of the answers. I/O only, so it runs on a
    writer thread: it reads the record (SyncToken, already voided?), voids it, reads again after a lost answer
    before anything is resent, and after a stale SyncToken (5010: changed since the read) reads and retries once."""

    def __init__(self, client: MergeClient, backoff: Callable[[int], float]) -> None:
        self.client = client
        self.backoff = backoff

    def void(self, entity: str, qbo_id: str) -> VoidAnswer:
        lost = stale = False
        payments: tuple[str, ...] | None = None
        for attempt in range(VOID_SENDS + 1):
            current = self.client.qbo_transaction(entity, qbo_id)
            if current is None:
                return VoidAnswer(qbo_id, {}, deleted=True)
            if payments is None:
                payments = applied_payments(current)
            if is_voided(current):
                return VoidAnswer(qbo_id, current, payments if lost else (), lost=lost)
            if attempt == VOID_SENDS:
                break
            try:
                res = self.client.void_transaction(entity, qbo_id, str(current.get("SyncToken") or "0"))
            except QboFault as exc:  # QuickBooks answered: not voided
                if STALE_OBJECT in exc.codes and not stale:
                    stale = True
                    continue
                raise VoidRefused(exc, qbo_id, payments) from exc
            except WriteError as exc:
                if not exc.ambiguous:
                    raise
                lost = True  # the void may have happened: the next read tells
                time.sleep(self.backoff(attempt))
                continue
            return VoidAnswer(qbo_id, res.model, payments, sent=True, request_id=res.request_id)
        raise WriteError(
            f"the void of QuickBooks {entity.lower()} {qbo_id} got no answer {VOID_SENDS} times and QuickBooks does "
            "not show it voided; checked again next run",
            ambiguous=True,
        )
