"""Deterministic demo/bench data for the Coperniq sandbox.

Why deterministic: tests and the bench compare runs, so the same (projects, seed) must always give
byte-identical data. All timestamps are derived from a fixed `end` instant, never from the wall clock.
It builds on `coperniq_state` and `coperniq_writes` only: the app calls it (`main()`, `app.seed`), never the
other way round. This module is the entry point (`seed_coperniq`) and the CLI; the tables it draws from are in
`seed_data`, the generators per resource (and the order of their random draws) in `seed_generators`.

    python -m sandbox.seed --projects 500 --seed 42 --coperniq-url http://127.0.0.1:8765
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import urllib.request
from datetime import UTC, datetime

from sandbox.coperniq_state import DAY_US, CoperniqHost, parse_iso
from sandbox.seed_data import (
    CATALOG,
    CITIES,
    CLOSERS,
    COMPANIES,
    FIRST,
    LAST,
    STREETS,
    TITLES,
    UTILITIES,
    WORKFLOW_WEIGHTS,
    WORKFLOWS,
)
from sandbox.seed_generators import (
    HOUR_US,
    seed_accounts,
    seed_catalog,
    seed_invoice_taxes,
    seed_projects,
    seed_taxes,
    seed_workflows,
)

#: Names this module had before the split and still serves (the tables are in seed_data).
__all__ = [
    "CATALOG",
    "CITIES",
    "CLOSERS",
    "COMPANIES",
    "DEFAULT_END",
    "FIRST",
    "HOUR_US",
    "LAST",
    "STREETS",
    "TITLES",
    "UTILITIES",
    "WORKFLOWS",
    "WORKFLOW_WEIGHTS",
    "main",
    "seed_coperniq",
]

DEFAULT_END = "2025-06-30T00:00:00Z"


def _parse_end(end: str | datetime) -> int:
    return parse_iso(end if isinstance(end, str) else end.astimezone(UTC).isoformat())


def seed_coperniq(
    app: CoperniqHost,
    projects: int = 50,
    seed: int = 42,
    *,
    accounts: int | None = None,
    end: str | datetime = DEFAULT_END,
    span_days: int = 730,
    invoices: bool = True,
    archived_rate: float = 0.01,
    workflows_v1_share: float | None = None,
    invoice_taxes: bool = False,
) -> dict[str, int]:
    """Fill `app` with workflows, catalog items, taxes, accounts, contacts, projects (with phase history),
    invoices and payments. Same arguments -> same data. Returns the state summary.

    Projects are spread over every phase of their workflow, so some are past "Install"/"Installation"
    and some before it; invoices exist only for projects past Sale (a deposit) and past install (final).

    `workflows_v1_share` (default: the app's profile switch) of the projects, exactly rounded, are Workflows
    1.0 projects (`stage` instead of `phase`). They are picked by a second generator seeded from `seed`, so the
    main stream, and with it every other record, is the same whatever the share.

    `invoice_taxes`: 7 in 10 of the invoices made carry a tax of `GET /taxes`, chosen by invoice id (no random
    draw, so every other field is as without). Off by default: a target without a mapping for those taxes fails
    such invoices, and the demo and the suite's seeded pipelines expect untaxed ones. The taxes are always made.
    """
    share = app.assumptions.workflows_v1_share if workflows_v1_share is None else workflows_v1_share
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"workflows_v1_share must be between 0 and 1, not {share!r}")
    rng = random.Random(seed)
    v1_projects = (
        set(random.Random(f"workflows_v1:{seed}").sample(range(projects), round(projects * share)))
        if share > 0 and projects > 0
        else set()
    )
    end_us = _parse_end(end) // 1000 * 1000
    start_us = end_us - span_days * DAY_US

    with app.lock:
        st = app.state
        workflows = seed_workflows(st, start_us)
        catalog_by_trade = seed_catalog(st, start_us)
        taxes = seed_taxes(st, start_us)
        last_invoice_before = max(st.invoices, default=0)
        n_accounts = accounts if accounts is not None else max(1, projects // 2) if projects else 0
        account_rows = seed_accounts(st, rng, n_accounts, start_us, end_us)
        seed_projects(
            st,
            rng,
            projects,
            account_rows,
            workflows,
            catalog_by_trade,
            end_us,
            invoices=invoices,
            archived_rate=archived_rate,
            v1_projects=v1_projects,
        )
        if invoice_taxes:
            seed_invoice_taxes(st, taxes, last_invoice_before)
        st.list_cache.clear()
        return st.summary()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.seed", description="Seed a running Coperniq sandbox via POST /__admin/seed"
    )
    parser.add_argument("--projects", type=int, default=50)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--invoice-taxes", action="store_true", help="give 7 in 10 seeded invoices a tax")
    parser.add_argument(
        "--coperniq-url", default="http://127.0.0.1:8765", help="sandbox root URL (a trailing /v1 is ignored)"
    )
    args = parser.parse_args(argv)
    root = args.coperniq_url.rstrip("/")
    root = root.removesuffix("/v1")
    req = urllib.request.Request(
        f"{root}/__admin/seed",
        method="POST",
        data=json.dumps({"projects": args.projects, "seed": args.seed, "invoice_taxes": args.invoice_taxes}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=600) as resp:
        print(resp.read().decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
