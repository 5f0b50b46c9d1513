"""Coperniq REST API emulator (`/v1`), faithful to docs/coperniq_api.md and coperniq-openapi.yml.

Why an emulator: the tap, the reverse target and the e2e/bench suites need a Coperniq that answers
with the real wire formats (auth header, bare-array vs. envelope pagination, error bodies, rate-limit
headers) and that tests can steer (move a project to a phase, inject faults, advance the clock).
Every behaviour the public docs leave open is listed as an ASSUMPTION in sandbox/README.md.

Run: `python -m sandbox.coperniq --port 8765 [--seed 42 --projects 50] [--profile pessimistic]`.

This module is the entry point: the CLI, and every name the app module had before the split. The app itself is
`coperniq_app.CoperniqApp` (auth, rate limits, admin helpers), its `/__admin/` routes are in `coperniq_admin`; the
rest is one layer down and never imports the app: `coperniq_state` (ids, time, the data), `coperniq_params`
(request fields), `coperniq_writes` (inserts and changes: `coperniq_inserts`, `coperniq_invoice_writes`,
`coperniq_updates`, `coperniq_phase_moves`), `coperniq_views` (response shapes), `coperniq_listing` (lists, search,
GET by id), `coperniq_records` (what projects and accounts share), and the routes of each resource:
`coperniq_projects`, `coperniq_accounts` (+ `/clients`), `coperniq_contacts`, `coperniq_catalog` (workflows,
catalog items), `coperniq_invoices`, `coperniq_payments`. The seeder (sandbox/seed.py) builds on state and writes
only.
"""

from __future__ import annotations

import argparse
import json
import sys

from sandbox._server import SandboxServer
from sandbox.coperniq_app import CoperniqApp
from sandbox.coperniq_catalog import CATALOG_TYPES, PRODUCT_CATEGORIES, SERVICE_CATEGORIES, TRADE_GROUPS
from sandbox.coperniq_invoices import CALCULATION_METHODS, INVOICE_CREATE_STATUSES, INVOICE_STATUSES
from sandbox.coperniq_params import ListParams, invalid, json_body, not_found, path_id
from sandbox.coperniq_payments import PAYMENT_METHODS
from sandbox.coperniq_records import ACCOUNT_TYPES, MATCH_BY, MATCH_STRATEGIES, PROJECT_STATUSES
from sandbox.coperniq_state import (
    API_PREFIX,
    DAY_US,
    PAGE_SIZE_DEFAULT,
    PAGE_SIZE_MAX,
    SANDBOX_USER,
    STAGE_ID_OFFSET,
    STAGE_SCOPE,
    START_IDS,
    Clock,
    CoperniqState,
    iso,
    parse_iso,
    public,
)
from sandbox.profiles import PROFILES
from sandbox.seed import seed_coperniq

#: Names this module had before the splits and still serves (the class is in coperniq_app, the request-field
#: helpers are in coperniq_params).
__all__ = [
    "ACCOUNT_TYPES",
    "API_PREFIX",
    "CALCULATION_METHODS",
    "CATALOG_TYPES",
    "DAY_US",
    "INVOICE_CREATE_STATUSES",
    "INVOICE_STATUSES",
    "MATCH_BY",
    "MATCH_STRATEGIES",
    "PAGE_SIZE_DEFAULT",
    "PAGE_SIZE_MAX",
    "PAYMENT_METHODS",
    "PRODUCT_CATEGORIES",
    "PROJECT_STATUSES",
    "SANDBOX_USER",
    "SERVICE_CATEGORIES",
    "STAGE_ID_OFFSET",
    "STAGE_SCOPE",
    "START_IDS",
    "TRADE_GROUPS",
    "Clock",
    "CoperniqApp",
    "CoperniqState",
    "ListParams",
    "invalid",
    "iso",
    "json_body",
    "main",
    "not_found",
    "parse_iso",
    "path_id",
    "public",
]


# --- CLI -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.coperniq", description="Coperniq API emulator")
    parser.add_argument("--host", default="127.0.0.1", help="loopback only")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default="sandbox-coperniq-key")
    parser.add_argument("--seed", type=int, default=None, help="seed demo data with this random seed")
    parser.add_argument("--projects", type=int, default=None, help="number of demo projects (default 50 with --seed)")
    parser.add_argument(
        "--invoice-taxes", action="store_true", help="seeded invoices: 7 in 10 carry a tax (default: none)"
    )
    parser.add_argument("--rate-limit-per-second", type=int, default=100)
    parser.add_argument("--rate-limit-per-day", type=int, default=5000)
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="optimistic",
        help="API behaviours the docs leave open (sandbox/profiles.py); seeding follows it too",
    )
    args = parser.parse_args(argv)
    app = CoperniqApp(
        api_key=args.api_key,
        rate_limit_per_second=args.rate_limit_per_second,
        rate_limit_per_day=args.rate_limit_per_day,
        profile=args.profile,
    )
    try:
        server = SandboxServer(app, args.host, args.port)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.seed is not None or args.projects is not None:
        seed_coperniq(
            app,
            projects=args.projects if args.projects is not None else 50,
            seed=args.seed if args.seed is not None else 42,
            invoice_taxes=args.invoice_taxes,
        )
    print(
        f"Coperniq sandbox listening on {server.root_url}{API_PREFIX} (profile {args.profile}, "
        f"{json.dumps(app.summary())})",
        flush=True,
    )
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
