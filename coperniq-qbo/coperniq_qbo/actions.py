"""`coperniq-qbo review`, `link`, `retry`, `dismiss`, `undismiss`: a person's decisions about single rows.

An action is appended to the ledger (`row_actions`) and written to the integration log with who and when; the next
run of the row's leg applies it before it evaluates anything (sync_ledger.ledger_review), so asking is safe while a
sync runs. `--now` runs that leg at once (`meltano run`) instead of waiting for the schedule.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import subprocess
from dataclasses import dataclass
from typing import Any

from coperniq_qbo.console import Console, fmt_time
from coperniq_qbo.errors import EXIT_OK, EXIT_USAGE, CliError
from coperniq_qbo.ledger_access import open_ledger
from coperniq_qbo.settings import Settings
from sync_ledger import Ledger
from sync_ledger.ledger_review import ALL_FAILED

#: source system -> (leg, the tap and target that run it)
LEGS = {
    "coperniq": ("forward", "tap-coperniq", "target-quickbooks-merge"),
    "quickbooks": ("reverse", "tap-quickbooks-merge", "target-coperniq"),
}
#: The integration log's run id for lines a person's action writes (not a sync run's).
OPERATOR_RUN = "operator"


@dataclass(frozen=True)
class RowRef:
    """A staged row as people name it: `[source:]stream:id`, e.g. `accounts:17`, `quickbooks:invoices:abc`."""

    system: str
    stream: str
    record_id: str

    @classmethod
    def parse(cls, text: str) -> RowRef:
        parts = text.split(":", 2)
        if len(parts) == 3 and parts[0] in LEGS:
            return cls(*parts)
        stream, sep, rid = text.partition(":")
        if not sep or not stream or not rid:
            raise CliError(
                f"row {text!r}: name it as stream:id (e.g. accounts:17), or quickbooks:stream:id for a row of the "
                "reverse leg",
                EXIT_USAGE,
            )
        return cls("coperniq", stream, rid)

    def __str__(self) -> str:
        prefix = "" if self.system == "coperniq" else f"{self.system}:"
        return f"{prefix}{self.stream}:{self.record_id}"


def actor(args: argparse.Namespace) -> str:
    """Who asks: --by, else the login name."""
    return str(getattr(args, "by", None) or os.environ.get("USER") or getpass.getuser() or "unknown")


def request(
    ledger: Ledger,
    ref: RowRef,
    action: str,
    *,
    by: str,
    target_id: str | None = None,
    reason: str | None = None,
) -> str:
    """Record one action (checked against the ledger) and its integration-log line; what it will do, in words.
    Shared by the CLI and the console."""
    if action in ("link", "new") and (ref.system, ref.stream) != ("coperniq", "accounts"):
        raise CliError(f"{action}: only a Coperniq client (accounts:<id>) is matched to a QuickBooks customer by hand")
    if ref.record_id != ALL_FAILED and ledger.staged_status(ref.system, ref.stream, ref.record_id) is None:
        raise CliError(f"no row {ref} in the sync ledger (see `coperniq-qbo log` for the rows a sync has seen)")
    if action == "dismiss" and not (reason or "").strip():
        raise CliError("dismiss needs --reason (the integration log keeps why a row was left alone)", EXIT_USAGE)
    ledger.request_row_action(
        ref.system, ref.stream, ref.record_id, action, actor=by, target_id=target_id, reason=reason
    )
    what = {
        "link": f"link to QuickBooks customer {target_id}",
        "new": "create a QuickBooks customer of its own",
        "retry": "retry" if ref.record_id != ALL_FAILED else "retry every failed row",
        "dismiss": "dismiss",
        "undismiss": "undismiss",
    }[action]
    leg = LEGS[ref.system][0]
    text = f"{by} asked to {what}" + (f" ({reason})" if reason else "") + f"; applied by the next {leg} run"
    ledger.log(
        OPERATOR_RUN,
        direction=leg,
        stream=ref.stream if ref.record_id != ALL_FAILED else "run",
        source_id=None if ref.record_id == ALL_FAILED else ref.record_id,
        action="operator",
        reason=text,
        target_id=target_id,
    )
    return text


def run_now(settings: Settings, system: str, con: Console, environ: dict[str, str] | None) -> int:
    """`--now`: run the row's leg at once in the Meltano project (its exit code)."""
    _, tap, target = LEGS[system]
    env = dict(environ if environ is not None else os.environ)
    if settings.company:
        env.setdefault("SYNC_COMPANY", settings.company)
    project = env.get("MELTANO_PROJECT_ROOT") or os.getcwd()
    con.say(f"running `meltano run {tap} {target}` in {project} ...")
    return subprocess.run(["meltano", "run", tap, target], cwd=project, env=env, check=False).returncode


def cmd_action(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    """link / retry / dismiss / undismiss (one or more rows)."""
    action = "new" if args.command == "link" and args.new else args.command
    if args.command == "link" and bool(args.new) == bool(args.qbo_id):
        raise CliError("link: give the QuickBooks customer's id, or --new (a customer of its own)", EXIT_USAGE)
    if args.command == "retry" and bool(getattr(args, "failed", False)) == bool(args.rows):
        raise CliError("retry: name the rows, or --failed (every failed row)", EXIT_USAGE)
    refs = [RowRef.parse(r) for r in args.rows]
    if args.command == "retry" and args.failed:
        refs = [RowRef(system, "*", ALL_FAILED) for system in LEGS]
    ledger = open_ledger(settings, read_only=False)
    try:
        with ledger.transaction():
            said = [
                (ref, request(ledger, ref, action, by=actor(args), target_id=args.qbo_id or None, reason=args.reason))
                for ref in refs
            ]
    finally:
        ledger.close()
    for ref, text in said:
        con.say(f"{ref}: {text}")
    if args.now:
        codes = [run_now(settings, system, con, args.environ) for system in sorted({r.system for r in refs})]
        return max(codes)
    return EXIT_OK


def cmd_review(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    """The review queue: each row with why it waits and its candidates, and the commands that decide it."""
    ledger = open_ledger(settings, read_only=True)
    if ledger is None:
        items: list[dict[str, Any]] = []
    else:
        try:
            items = ledger.review_items(status=None if args.all else ("open", "decided"))
        finally:
            ledger.close()
    if args.format == "json":
        con.say(json.dumps(items, default=fmt_time, indent=2))
        return EXIT_OK
    if not items:
        con.say("The review queue is empty.")
        return EXIT_OK
    for item in items:
        ref = RowRef(item["source_system"], item["stream"], item["record_id"])
        con.say(f"{ref}  {item.get('name') or ''!r}  {item['status']}  queued {fmt_time(item['queued_at'])}")
        con.say(f"  why: {item['reason']}")
        for c in item["candidates"]:
            con.say(
                f"  candidate: QuickBooks Id {c.get('remote_id') or '-'} (Merge {c.get('id')})  {c.get('kind')}  "
                f"{c.get('name')!r}  {c.get('email') or '-'}  - {c.get('why')}"
            )
        decision = item.get("decision")
        if decision:
            con.say(
                f"  decided: {decision['decision']} {decision.get('target_id') or ''} by {decision['actor']} at "
                f"{fmt_time(decision['decided_at'])} (applied by the next run)"
            )
        else:
            con.say(
                f"  decide: coperniq-qbo link {ref} <QuickBooks Id> | coperniq-qbo link {ref} --new | "
                f"coperniq-qbo dismiss {ref} --reason '...'"
            )
    return EXIT_OK


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    """The row commands, registered by cli.build_parser."""
    p = sub.add_parser("review", parents=[common], help="the review queue: rows waiting for a person's decision")
    p.add_argument("--all", action="store_true", help="also resolved and dismissed entries")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_review)

    who = argparse.ArgumentParser(add_help=False)
    who.add_argument("--by", help="who decides (default: your login name), kept in the integration log")
    who.add_argument("--now", action="store_true", help="run the row's leg now (meltano run) instead of waiting")

    p = sub.add_parser(
        "link", parents=[common, who], help="link a queued Coperniq client to a QuickBooks customer (or --new)"
    )
    p.add_argument("rows", nargs=1, metavar="ROW", help="accounts:<Coperniq id>")
    p.add_argument("qbo_id", nargs="?", help="the QuickBooks customer: its QuickBooks Id or Merge id")
    p.add_argument("--new", action="store_true", help="create a QuickBooks customer of its own instead")
    p.add_argument("--reason")
    p.set_defaults(func=cmd_action, qbo_id=None)

    p = sub.add_parser("retry", parents=[common, who], help="evaluate rows again on the next run")
    p.add_argument("rows", nargs="*", metavar="ROW", help="stream:id, or quickbooks:stream:id")
    p.add_argument("--failed", action="store_true", help="every failed row, both legs")
    p.add_argument("--reason")
    p.set_defaults(func=cmd_action, qbo_id=None, new=False)

    for name, text in (("dismiss", "leave a known-bad row alone"), ("undismiss", "take a dismissed row back")):
        p = sub.add_parser(name, parents=[common, who], help=text)
        p.add_argument("rows", nargs="+", metavar="ROW", help="stream:id, or quickbooks:stream:id")
        p.add_argument("--reason", help="why (required by dismiss), kept in the integration log")
        p.set_defaults(func=cmd_action, qbo_id=None, new=False)
