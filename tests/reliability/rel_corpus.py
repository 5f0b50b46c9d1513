"""A corpus of bad Coperniq records (>= 20 kinds), built by mutating copies of real tap output, so each bad record
differs from a good one in exactly the way its name says. New ids (70,000,000+) keep them apart from the good data."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

Msg = dict[str, Any]
BAD_BASE = 70_000_000


class Corpus:
    """Good tap output + bad records appended; `kinds` maps kind -> (stream, record id) for the assertions."""

    def __init__(self, lines: str) -> None:
        self.messages: list[Msg] = [json.loads(line) for line in lines.splitlines() if line.strip()]
        self.records: dict[str, list[Msg]] = {}
        for m in self.messages:
            if m["type"] == "RECORD":
                self.records.setdefault(m["stream"], []).append(m["record"])
        self.extra: list[tuple[str, Any]] = []  # (stream, record or raw text line)
        self.kinds: dict[str, tuple[str, str | None]] = {}
        self._next = BAD_BASE

    def new_id(self) -> int:
        self._next += 1
        return self._next

    def first(self, stream: str, pred: Callable[[Msg], bool] = lambda r: True) -> Msg:
        return copy.deepcopy(next(r for r in self.records[stream] if pred(r)))

    def add(self, kind: str, stream: str, record: Any, record_id: Any = None) -> None:
        self.extra.append((stream, record))
        rid = record_id if record_id is not None else (record.get("id") if isinstance(record, dict) else None)
        self.kinds[kind] = (stream, None if rid is None else str(rid))

    def text(self) -> str:
        """Original messages, then the bad records (each stream's SCHEMA was already sent), then the last STATE."""
        out = [m for m in self.messages if m["type"] != "STATE"]
        lines = [json.dumps(m) for m in out]
        for stream, rec in self.extra:
            if isinstance(rec, str):
                lines.append(rec)  # a raw line, e.g. NaN that json.dumps would otherwise write as-is
            else:
                lines.append(json.dumps({"type": "RECORD", "stream": stream, "record": rec}))
        states = [m for m in self.messages if m["type"] == "STATE"]
        if states:
            lines.append(json.dumps(states[-1]))
        return "\n".join(lines) + "\n"


LONG = "Oversized " * 600  # 6,000 characters


def build_corpus(lines: str, triggered_pid: int, paid_invoice_id: int) -> Corpus:
    """Append >= 20 kinds of bad records to real tap output. `triggered_pid`: a good project past its trigger
    phase (bad invoices hang under it); `paid_invoice_id`: a good invoice of it (bad payments apply to it)."""
    c = Corpus(lines)
    proj = c.first("projects", lambda r: r["id"] == triggered_pid)
    inst = c.first(
        "project_phase_instances",
        lambda r: r["projectId"] == triggered_pid and r.get("startedAt") and r["name"] in ("Install", "Installation"),
    )
    acct = c.first("accounts", lambda r: r["id"] == proj["accountId"])
    inv = c.first("invoices", lambda r: r["id"] == paid_invoice_id)
    pay = c.first("payments")
    number = [9000]

    def project(
        kind: str,
        *,
        project_fn: Callable[[Msg], Any] = lambda p: None,
        account_fn: Callable[[Msg], Any] = lambda a: None,
        instance_fn: Callable[[Msg], Any] = lambda i: None,
        stream: str = "projects",
    ) -> None:
        """A new triggered project with its own new client, then the mutation."""
        a, p, i = copy.deepcopy(acct), copy.deepcopy(proj), copy.deepcopy(inst)
        a["id"], p["id"], i["id"] = c.new_id(), c.new_id(), c.new_id()
        number[0] += 1
        a["title"] = f"Corpus Client {kind}"
        a["primaryEmail"] = f"{kind.replace('_', '-')}@corpus.example"
        p.update(accountId=a["id"], title=f"Corpus Project {kind}", number=number[0])
        i["projectId"] = p["id"]
        account_fn(a)
        project_fn(p)
        instance_fn(i)
        c.add(f"_account_{kind}", "accounts", a)
        c.add(f"_instance_{kind}", "project_phase_instances", i)
        c.add(kind, "projects", p)
        if stream == "accounts":
            c.kinds[kind] = ("accounts", str(a["id"]))
        elif stream == "project_phase_instances":
            c.kinds[kind] = ("project_phase_instances", str(i["id"]))

    def invoice(kind: str, fn: Callable[[Msg], Any], raw: Callable[[str], str] | None = None) -> None:
        v = copy.deepcopy(inv)
        v["id"] = c.new_id()
        number[0] += 1
        v["uid"] = number[0]
        fn(v)
        if raw:
            c.add(kind, "invoices", raw(json.dumps({"type": "RECORD", "stream": "invoices", "record": v})), v["id"])
        else:
            c.add(kind, "invoices", v)

    def payment(kind: str, fn: Callable[[Msg], Any], raw: Callable[[str], str] | None = None) -> None:
        p = copy.deepcopy(pay)
        p.update(id=c.new_id(), invoiceId=paid_invoice_id, amount=1.0)
        fn(p)
        if raw:
            c.add(kind, "payments", raw(json.dumps({"type": "RECORD", "stream": "payments", "record": p})), p["id"])
        else:
            c.add(kind, "payments", p)

    def drop(key: str) -> Callable[[Msg], None]:
        return lambda r: r.pop(key, None)

    def setv(**kv: Any) -> Callable[[Msg], None]:
        return lambda r: r.update(kv)

    # --- projects and clients (rejected)
    project("project_id_wrong_type", project_fn=setv(id="forty-two"))
    project("project_missing_id", project_fn=drop("id"))
    project("project_no_client", project_fn=setv(accountId=None))
    project("project_unknown_client", project_fn=setv(accountId=987654321))
    project("project_number_wrong_type", project_fn=setv(number={"n": 1}))
    project("phase_bad_date", instance_fn=setv(startedAt="2025-13-45T99:00:00Z"), stream="project_phase_instances")
    project("project_bad_updated_at", project_fn=setv(updatedAt="yesterday"))
    project("client_email_invalid", account_fn=setv(primaryEmail="not an email@@"), stream="accounts")
    # --- names QuickBooks cannot take as they are (repaired: synced with a legal DisplayName)
    project("client_name_colon", account_fn=setv(title="Acme: Solar: HQ"), stream="accounts")
    project("client_name_oversized", account_fn=setv(title=LONG), stream="accounts")
    project("client_name_unicode", account_fn=setv(title="Zoë Ñúñez 🌞 שלום 李雷 Ǆ\u0301"), stream="accounts")
    project("project_name_control_chars", project_fn=setv(title="Roof\tand\nPanels\r"))
    # --- invoices
    invoice("invoice_missing_id", drop("id"))
    invoice("invoice_amount_wrong_type", setv(amount="12.50 USD"))
    # a negative total is a credit (a QuickBooks credit memo); one whose lines add up to a charge is not
    invoice("invoice_amount_negative", setv(amount=-500.0))
    invoice(
        "invoice_amount_nan", lambda v: v.update(amount=0.5), raw=lambda s: s.replace('"amount": 0.5', '"amount": NaN')
    )
    invoice(
        "invoice_quantity_infinite",
        lambda v: v["lineItems"][0].update(quantity=0.25),
        raw=lambda s: s.replace('"quantity": 0.25', '"quantity": Infinity'),
    )
    invoice("invoice_quantity_negative", lambda v: v["lineItems"][0].update(quantity=-3))
    invoice("invoice_no_lines", setv(lineItems=[]))
    invoice("invoice_unknown_project", lambda v: v.update(record={"id": 987654321, "uid": 1, "title": "Ghost"}))
    invoice("invoice_bad_issue_date", setv(issueDate="31/12/2025", dueDate="someday"))
    invoice("invoice_duplicate_number", setv(uid=inv["uid"]))
    # --- payments
    payment("payment_amount_negative", setv(amount=-100.0))
    payment("payment_amount_zero", setv(amount=0))
    payment("payment_amount_nan", setv(amount=0.5), raw=lambda s: s.replace('"amount": 0.5', '"amount": NaN'))
    payment("payment_amount_wrong_type", setv(amount="lots"))
    payment("payment_unknown_invoice", setv(invoiceId=987654321))
    payment("payment_missing_date", setv(paymentDate=None, createdAt=None))
    payment("payment_bad_date", setv(paymentDate="not-a-date", createdAt="not-a-date"))
    payment("payment_over_balance", setv(amount=10_000_000.0))
    return c
