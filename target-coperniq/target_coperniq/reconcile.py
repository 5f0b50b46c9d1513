"""The reverse leg's decisions: which staged QuickBooks records become which Coperniq writes.

Sinks only stage records into the ledger; everything here works from the ledger, so records may arrive
in any order and in any run. Each record ends as one of:
  done     written (created/updated/linked/deleted) or already up to date;
  skipped  deliberately not written (echo of the forward leg, bill, void policy, ...), logged once;
  waiting  depends on something not synced (yet): its customer, invoice or item. Stays `pending` while
           the run is in progress; the end-of-run pass marks it `waiting` with a `waiting:` reason and
           re-evaluates it silently on later runs, so a customer linked later still brings its invoices
           (what it waits on is written by the forward leg, in another process: tried in every final pass);
  failed   an API error; retried on the next runs up to `max_attempts`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from sync_ledger import DEFAULT_LEDGER_PATH, ApiClient, ApiError, Ledger, Link, fingerprint
from sync_ledger.rows import Journal, Outcome, RowLog, Wait, echo_link, overall
from sync_ledger.util import PAYMENT_DATE_SLACK, closest_by_day, day_of
from target_coperniq.coperniq import CoperniqApi
from target_coperniq.invoice_update import InvoiceUpdateError, update_invoice_lines
from target_coperniq.mapping import (
    DELETED_PREFIX,
    VOID_PREFIX,
    CatalogRef,
    build_line_items,
    create_body,
    invoice_applications,
    invoice_description,
    invoice_payload,
    marker,
    money,
    payment_body,
    payment_source_id,
    update_body,
)

SOURCE = "quickbooks"
TARGET = "coperniq"
DIRECTION = "reverse"
WAIT = "waiting: "
INTENT_PREFIX = "target-coperniq:"
FORWARD_ECHO = "written by the forward leg"
NOT_SYNCED = "customer not synced from Coperniq"
DEFAULT_LINE_ITEM_NAME = "QuickBooks line item"
ADJUSTMENT_ITEM_NAME = "QuickBooks adjustment"
PROGRESS_EVERY = 100
#: Coperniq payments that hold no money (a twin is never one of these).
VOID_STATUSES = frozenset({"VOIDED", "FAILED", "DECLINED", "CANCELLED", "REFUNDED"})
CENT = Decimal("0.01")


class FatalTargetError(Exception):
    """Stop the run: retrying record by record cannot help (bad credentials, wrong URL)."""


class Reconciler:
    """Owns the ledger, the Coperniq client and the run; sinks call stage() and reconcile()."""

    def __init__(self, config: Mapping[str, Any], logger: logging.Logger) -> None:
        self.config = config
        self.logger = logger
        self.dry_run = bool(config.get("dry_run"))
        self.void_policy = str(config.get("void_policy") or "mark").lower()
        self.payment_method = str(config.get("payment_method") or "CHECK").upper()
        self.max_attempts = int(config.get("max_attempts") or 5)
        path = Path(str(config.get("ledger_path") or DEFAULT_LEDGER_PATH))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(path, lock_timeout=float(config.get("ledger_lock_timeout") or 120))
        api_key = str(config["api_key"])
        self.client = ApiClient(
            str(config.get("api_url") or "https://api.coperniq.io/v1"),
            headers={"x-api-key": api_key, "Accept": "application/json"},
            max_requests_per_second=float(config["max_requests_per_second"])
            if config.get("max_requests_per_second")
            else None,
            secrets=[api_key],
        )
        self.api = CoperniqApi(self.client, create_catalog_items=bool(config.get("create_catalog_items", True)))
        self.run_id = self.ledger.start_run(DIRECTION, dry_run=self.dry_run)
        self.rows = RowLog(self.ledger, self.run_id, DIRECTION, logger, dry=self.dry_run)
        self.journal = Journal(self.ledger, SOURCE, dry=self.dry_run)
        self.sinks: list[Any] = []
        self._claimed_payments: set[str] | None = None
        self.counts: Counter[str] = Counter()
        self._open_intents = {key for key, _ in self.ledger.pending_intents(INTENT_PREFIX)}
        if self._open_intents:
            logger.warning(
                "%d writes were interrupted by a crash; looking them up in Coperniq before re-creating",
                len(self._open_intents),
            )
        self._finished = False

    # ------------------------------------------------------------------ entry points

    def stage(self, stream: str, records: Iterable[dict[str, Any]]) -> int:
        rows = [(str(r["id"]), r) for r in records if r.get("id")]
        self.ledger.stage(SOURCE, stream, rows)
        return len(rows)

    def reconcile(self, *, final: bool = False) -> None:
        """Process staged invoices, then payments (a payment needs its invoice's Coperniq id)."""
        for stream, handler in (("invoices", self._invoice), ("payments", self._payment)):
            # waiting rows (status `waiting`; `skipped` with the WAIT prefix in ledgers from before it) are tried
            # again in the final pass of every run: what they wait on is written by the forward leg
            statuses = ("pending", "failed", "waiting", "skipped") if final else ("pending", "failed")
            try:
                for rid, payload, status, attempts in self.ledger.iter_staged(SOURCE, stream, status=statuses):
                    if status == "failed" and attempts >= self.max_attempts:
                        continue
                    if status == "skipped":
                        _, _, last_error = self.ledger.staged_status(SOURCE, stream, rid) or ("", 0, None)
                        if not (last_error or "").startswith(WAIT):
                            continue
                    self._process(stream, rid, payload, status, handler, final)
            finally:
                self.journal.flush()  # payments look up the invoices' links; a stopped run keeps what it wrote
        self.ledger.flush()

    def finish(self, status: str = "success") -> dict[str, dict[str, int]]:
        if self._finished:
            return {}
        self._finished = True
        self.journal.flush()
        counts = self.ledger.finish_run(self.run_id, status)
        summary = (
            "; ".join(f"{s}: " + ", ".join(f"{a}={n}" for a, n in sorted(c.items())) for s, c in sorted(counts.items()))
            or "nothing to do"
        )
        self.logger.info("Reverse run %s %s%s: %s", self.run_id, status, " (dry run)" if self.dry_run else "", summary)
        self.client.close()
        self.ledger.close()
        return counts

    # ------------------------------------------------------------------ bookkeeping

    def _process(
        self,
        stream: str,
        rid: str,
        payload: dict[str, Any],
        status: str,
        handler: Callable[[str, dict[str, Any], bool], list[Outcome]],
        final: bool,
    ) -> None:
        try:
            outcomes = handler(rid, payload, final)
        except ApiError as exc:
            if exc.status in (401, 403):
                raise FatalTargetError(
                    f"Coperniq rejected the API key (HTTP {exc.status}): check the `api_key` setting (and `api_url`)."
                ) from None
            if exc.status == 429:  # after ApiClient's backoff: every further row would wait the same and fail
                raise FatalTargetError(
                    f"Coperniq kept answering 429 Too Many Requests after {self.client.max_retries} retries "
                    "with backoff: the daily cap of 5,000 calls per API key is probably spent. Run again later; "
                    "staged records are kept and retried."
                ) from None
            outcomes = [Outcome("failed", rid, "failed", exc.message, request_id=exc.request_id)]
        except InvoiceUpdateError as exc:
            outcomes = [Outcome("failed", rid, "failed", str(exc))]
        except (LookupError, ValueError, TypeError, ArithmeticError) as exc:
            outcomes = [Outcome("failed", rid, "failed", f"{type(exc).__name__}: {exc}")]
        status_of_row = overall(outcomes)
        for outcome in outcomes:
            if outcome.kind == "wait":
                if final and status not in ("skipped", "waiting"):  # logged once, when the run gives up waiting
                    self.rows.outcome(stream, outcome, "skipped")
            elif outcome.action:
                self.rows.outcome(stream, outcome)
        if status_of_row == "wait":
            if final:
                reason = next(o.reason for o in outcomes if o.kind == "wait")
                self.journal.mark(stream, rid, "waiting", WAIT + reason)
        elif status_of_row == "failed":
            self.journal.mark(stream, rid, "failed", next(o.reason for o in outcomes if o.kind == "failed"))
        elif status_of_row == "skipped":
            self.journal.mark(stream, rid, "skipped", outcomes[0].reason if outcomes else "")
        else:
            self.journal.mark(stream, rid, "done")
        self.counts[status_of_row] += 1
        if sum(self.counts.values()) % PROGRESS_EVERY == 0:
            self.logger.info("Reverse leg progress: %s", dict(self.counts))

    def _begin(self, key: str, payload: dict[str, Any]) -> None:
        """Rule 1 of the journal: the intent is durable before the API call it announces."""
        self.journal.begin([(key, payload)])
        self._open_intents.add(key)

    def _commit(self, key: str, link: Link) -> None:
        self.journal.link(link, key)
        self._open_intents.discard(key)

    # ------------------------------------------------------------------ lookups

    def _forward_link(self, target_type: str, merge_id: str, remote_id: Any) -> Link | None:
        """A link whose QuickBooks side is this record and which the forward leg wrote (echo)."""
        return echo_link(
            self.ledger, SOURCE, target_type, merge_id, other=TARGET, remote_id=str(remote_id) if remote_id else None
        )

    def _record_for(self, contact_id: str | None) -> tuple[str, int] | None:
        """(kind, id) of the Coperniq project (QBO job) or account (QBO customer) a Merge contact is linked to.

        By Merge UUID first; then by QBO Id, for jobs the forward leg created through passthrough before
        Merge had assigned them a UUID."""
        if not contact_id:
            return None
        found = self._contact_link(self.ledger.get_link_by_target, contact_id)
        if found is None:
            contact = self.ledger.staged(SOURCE, "contacts", contact_id)
            if contact and contact.get("remote_id"):
                found = self._contact_link(self.ledger.get_link_by_remote, str(contact["remote_id"]))
        return found

    @staticmethod
    def _contact_link(lookup: Callable[[str, str, str], Link | None], key: str) -> tuple[str, int] | None:
        for target_type in ("job", "customer"):
            link = lookup(SOURCE, target_type, key)
            if link is not None and link.source_system == TARGET and link.source_type in ("project", "account"):
                return link.source_type, int(link.source_id)
        return None

    def _reverse_link(self, source_type: str, source_id: str) -> Link | None:
        link = self.ledger.get_link(SOURCE, source_type, source_id)
        return link if link is not None and link.target_system == TARGET and link.target_id else None

    # ------------------------------------------------------------------ catalog mapping

    def _catalog(self, name: str, **kwargs: Any) -> int:
        if self.dry_run:
            return self.api.find_catalog_item(name) or 0
        return self.api.catalog_item(name, **kwargs)

    def _default_ref(self) -> CatalogRef:
        configured = self.config.get("default_catalog_item")
        if configured:
            return CatalogRef(int(configured))
        return CatalogRef(self._catalog(str(self.config.get("default_catalog_item_name") or DEFAULT_LINE_ITEM_NAME)))

    def _line_ref(self, line: dict[str, Any], final: bool) -> CatalogRef:
        """Merge item -> Coperniq catalog item with the same name (created if missing); no item -> default."""
        item_id = line.get("item")
        if item_id:
            item = self.ledger.staged(SOURCE, "items", item_id)
            if item is None and not final:
                raise Wait(f"item {item_id} not received yet")
            if item and item.get("name"):
                cost = money(item.get("purchase_price")) or Decimal(0)
                return CatalogRef(
                    self._catalog(item["name"], merge_type=item.get("type"), price=item.get("unit_price"), cost=cost),
                    cost,
                )
        return self._default_ref()

    # ------------------------------------------------------------------ invoices

    def _invoice(self, rid: str, inv: dict[str, Any], final: bool) -> list[Outcome]:
        def skip(reason: str) -> list[Outcome]:
            return [Outcome("skipped", rid, "skipped", reason)]

        if (inv.get("type") or "ACCOUNTS_RECEIVABLE").upper() != "ACCOUNTS_RECEIVABLE":
            return skip("bill (accounts payable), not a customer invoice")
        gone = "deleted" if inv.get("remote_was_deleted") else "voided" if (inv.get("status") or "") == "VOID" else ""
        if fwd := self._forward_link("invoice", rid, inv.get("remote_id")):
            note = f"; {gone} in QuickBooks, Coperniq invoice {fwd.source_id} is owned by Coperniq" if gone else ""
            return skip(FORWARD_ECHO + note)
        link = self._reverse_link("invoice", rid)
        if gone:
            return [self._void(rid, inv, link, gone)]
        record = self._record_for(inv.get("contact"))
        if record is None:
            return [Outcome("wait", rid, reason=NOT_SYNCED)]
        kind, record_id = record
        try:
            lines = build_line_items(
                inv, lambda line: self._line_ref(line, final), lambda: CatalogRef(self._catalog(ADJUSTMENT_ITEM_NAME))
            )
        except Wait as wait:
            return [Outcome("wait", rid, reason=str(wait))]
        payload = invoice_payload(inv, record_id, lines)
        fp = fingerprint(payload)
        new_link = Link(SOURCE, "invoice", rid, TARGET, "invoice", None, fingerprint=fp, origin=SOURCE)
        if link is not None:
            if link.status != "active":
                return skip(f"Coperniq invoice {link.target_id} was already {link.status}")
            if link.fingerprint == fp:
                return [Outcome("done", rid, target_id=link.target_id)]
            if self.dry_run:
                return [
                    Outcome("done", rid, "planned", f"would update Coperniq invoice {link.target_id}", link.target_id)
                ]
            update_invoice_lines(self.api, str(link.target_id), update_body(payload))
            new_link.target_id = link.target_id
            self.journal.link(new_link)
            return [Outcome("done", rid, "updated", "changed in QuickBooks", link.target_id)]
        if self.dry_run:
            return [Outcome("done", rid, "planned", f"would create an invoice on Coperniq {kind} {record_id}")]
        key = f"{INTENT_PREFIX}invoice:{rid}"
        if key in self._open_intents and (found := self.api.find_invoice(record_id, kind, marker(rid))):
            new_link.target_id = str(found["id"])
            try:
                update_invoice_lines(self.api, new_link.target_id, update_body(payload))
            except InvoiceUpdateError:
                new_link.fingerprint = None  # linked, not up to date: the next run updates it again
                self._commit(key, new_link)
                raise
            self._commit(key, new_link)
            return [Outcome("done", rid, "linked", "found in Coperniq after an interrupted run", new_link.target_id)]
        self._begin(key, {"record_id": record_id, "kind": kind, "marker": marker(rid)})
        created = self.api.create_invoice(
            create_body(payload), record_id=record_id, record_kind=kind, marker=marker(rid)
        )
        new_link.target_id = str(created["id"])
        self._commit(key, new_link)
        return [Outcome("done", rid, "created", f"on Coperniq {kind} {record_id}", new_link.target_id)]

    def _void(self, rid: str, inv: dict[str, Any], link: Link | None, gone: str) -> Outcome:
        """QuickBooks void/delete of an invoice the reverse leg created, by `void_policy`."""
        if link is None:
            return Outcome("skipped", rid, "skipped", f"{gone} in QuickBooks before it was synced to Coperniq")
        if link.status in ("voided", "deleted"):
            return Outcome("done", rid, target_id=link.target_id)
        target_id = str(link.target_id)
        if self.void_policy == "ignore":
            return Outcome("skipped", rid, "skipped", f"{gone} in QuickBooks; void_policy=ignore", target_id)
        if self.dry_run:
            return Outcome(
                "done",
                rid,
                "planned",
                f"{gone} in QuickBooks; would {self.void_policy} Coperniq invoice {target_id}",
                target_id,
            )
        if self.void_policy == "delete":
            try:
                self.api.delete_invoice(target_id)
            except ApiError as exc:
                if exc.status != 404:
                    raise
            link.status = "deleted"
            self.journal.link(link)
            return Outcome("done", rid, "deleted", f"{gone} in QuickBooks; void_policy=delete", target_id)
        prefix = DELETED_PREFIX if gone == "deleted" else VOID_PREFIX
        self.api.update_invoice(
            target_id, {"status": "DECLINED", "description": invoice_description(inv, prefix=prefix)}
        )
        link.status = "deleted" if gone == "deleted" else "voided"
        self.journal.link(link)
        return Outcome(
            "done",
            rid,
            "updated",
            f"{gone} in QuickBooks; marked (status DECLINED, description prefixed {prefix.strip()})",
            target_id,
        )

    # ------------------------------------------------------------------ payments

    def _payment(self, rid: str, pay: dict[str, Any], final: bool) -> list[Outcome]:
        if (pay.get("type") or "ACCOUNTS_RECEIVABLE").upper() != "ACCOUNTS_RECEIVABLE":
            return [Outcome("skipped", rid, "skipped", "bill payment (accounts payable)")]
        if self._forward_link("payment", rid, pay.get("remote_id")):
            return [Outcome("skipped", rid, "skipped", FORWARD_ECHO)]
        applications = invoice_applications(pay)
        if not applications:
            return [Outcome("skipped", rid, "skipped", "not applied to any invoice")]
        if pay.get("contact") and self._record_for(pay["contact"]) is None:
            return [Outcome("wait", rid, reason=NOT_SYNCED)]
        return [self._application(rid, pay, invoice_id, amount, applications) for invoice_id, amount, _ in applications]

    def _twin_payment(self, invoice: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """A Coperniq payment on this invoice that this QuickBooks payment mirrors (the same amount, dated within
        PAYMENT_DATE_SLACK days) and that no link claims yet: a payment recorded in both systems before the
        forward leg linked them. Importing it would count the money twice in Coperniq."""
        claimed = self._claimed()
        same = [
            p
            for p in self.api.payments(invoice)
            if str(p.get("id")) not in claimed
            and str(p.get("status") or "").upper() not in VOID_STATUSES
            and Decimal(str(p.get("amount") or 0)).quantize(CENT) == Decimal(str(body["amount"])).quantize(CENT)
        ]
        return closest_by_day(same, day_of(body.get("paymentDate")), lambda p: p.get("paymentDate"), PAYMENT_DATE_SLACK)

    def _claimed(self) -> set[str]:
        """Coperniq payments some link holds (read once per run, then kept up to date by this run's links)."""
        if self._claimed_payments is None:
            self._claimed_payments = {link.source_id for link in self.ledger.links(TARGET, "payment")} | {
                str(link.target_id) for link in self.ledger.links(SOURCE, "payment") if link.target_id
            }
        return self._claimed_payments

    def _coperniq_invoice(self, merge_invoice_id: str) -> str | Outcome:
        """Coperniq id of the invoice a QuickBooks payment applies to: forward-leg or reverse-leg link."""
        fwd = self.ledger.get_link_by_target(SOURCE, "invoice", merge_invoice_id)
        if fwd is not None and fwd.source_system == TARGET:
            return fwd.source_id
        rev = self._reverse_link("invoice", merge_invoice_id)
        if rev is not None:
            if rev.status == "deleted" and self.void_policy == "delete":
                return Outcome("skipped", "", "skipped", f"invoice {merge_invoice_id} was deleted in Coperniq")
            return str(rev.target_id)
        return Outcome("wait", "", reason=f"invoice {merge_invoice_id} not synced to Coperniq")

    def _application(
        self,
        rid: str,
        pay: dict[str, Any],
        invoice_id: str,
        amount: Decimal,
        applications: list[tuple[str, Decimal, str | None]],
    ) -> Outcome:
        sid = payment_source_id(rid, invoice_id, applications)
        link = self._reverse_link("payment", sid)
        if pay.get("remote_was_deleted"):
            if link is None:
                return Outcome("skipped", sid, "skipped", "deleted in QuickBooks before it was synced")
            if link.status == "deleted":
                return Outcome("done", sid, target_id=link.target_id)
            if not self.dry_run:
                link.status = "deleted"
                self.journal.link(link)
            return Outcome(
                "skipped",
                sid,
                "skipped",
                "deleted in QuickBooks; Coperniq has no API to delete "
                f"payments: remove payment {link.target_id} by hand",
                link.target_id,
            )
        body = payment_body(pay, amount, sid, self.payment_method)
        fp = fingerprint(body)
        if link is not None:
            if link.fingerprint == fp:
                return Outcome("done", sid, target_id=link.target_id)
            return Outcome(
                "skipped",
                sid,
                "skipped",
                "changed in QuickBooks; Coperniq payments cannot be edited "
                f"through the API: check payment {link.target_id}",
                link.target_id,
            )
        invoice = self._coperniq_invoice(invoice_id)
        if isinstance(invoice, Outcome):
            invoice.source_id = sid
            return invoice
        if self.dry_run:
            return Outcome("done", sid, "planned", f"would add a payment of {amount} to Coperniq invoice {invoice}")
        key = f"{INTENT_PREFIX}payment:{sid}"
        new_link = Link(SOURCE, "payment", sid, TARGET, "payment", None, fingerprint=fp, origin=SOURCE)
        if key in self._open_intents and (found := self.api.find_payment(invoice, sid)):
            new_link.target_id = str(found["id"])
            self._commit(key, new_link)
            return Outcome("done", sid, "linked", "found in Coperniq after an interrupted run", new_link.target_id)
        if (twin := self._twin_payment(invoice, body)) is not None:
            new_link.target_id, new_link.origin = str(twin["id"]), TARGET
            self._claimed().add(new_link.target_id)
            self._commit(key, new_link)
            return Outcome(
                "done",
                sid,
                "linked",
                f"Coperniq invoice {invoice} already has this payment ({amount} on "
                f"{str(twin.get('paymentDate') or '')[:10]}): linked, not counted twice",
                new_link.target_id,
            )
        self._begin(key, {"invoice_id": invoice, "payment_reference": sid})
        created = self.api.create_payment(invoice, body)
        new_link.target_id = str(created["id"])
        self._claimed().add(new_link.target_id)  # never the "twin" of a later payment of the same amount
        self._commit(key, new_link)
        return Outcome("done", sid, "created", f"on Coperniq invoice {invoice}", new_link.target_id)
