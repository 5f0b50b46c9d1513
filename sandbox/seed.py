"""Deterministic demo/bench data for the Coperniq sandbox.

Why deterministic: tests and the bench compare runs, so the same (projects, seed) must always give
byte-identical data. All timestamps are derived from a fixed `end` instant, never from the wall clock.
It builds on `coperniq_state` and `coperniq_writes` only: the app calls it (`main()`, `app.seed`), never the
other way round.

    python -m sandbox.seed --projects 500 --seed 42 --coperniq-url http://127.0.0.1:8765
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import unicodedata
import urllib.request
from datetime import UTC, datetime
from typing import Any

from sandbox.coperniq_state import DAY_US, CoperniqHost, parse_iso
from sandbox.coperniq_writes import (
    insert_account,
    insert_catalog_item,
    insert_contact,
    insert_invoice,
    insert_payment,
    insert_project,
    insert_workflow,
)

DEFAULT_END = "2025-06-30T00:00:00Z"
HOUR_US = DAY_US // 24

#: (name, description, trade, phases, install phase name)
WORKFLOWS: list[tuple[str, str, str, list[str], str]] = [
    (
        "Residential Solar",
        "Standard residential PV workflow",
        "Solar",
        ["Sale", "Site Survey", "Design", "Permitting", "Install", "Inspection", "PTO"],
        "Install",
    ),
    (
        "HVAC Replacement",
        "Heat pump / furnace change-out",
        "HVAC",
        ["Sale", "Site Visit", "Installation", "Closeout"],
        "Installation",
    ),
    (
        "Battery Retrofit",
        "Add storage to an existing PV system",
        "Electrical",
        ["Sale", "Design", "Utility Approval", "Installation", "Commissioning"],
        "Installation",
    ),
]
WORKFLOW_WEIGHTS = [0.6, 0.25, 0.15]

#: (name, type, category, tradeGroup, manufacturer, sku, cost, price, trade)
CATALOG: list[tuple[str, str, str, str, str | None, str | None, float, float, str]] = [
    ("REC 400W Alpha", "PRODUCT", "PV_MODULE", "ENERGY", "REC", "REC400AA", 180.0, 300.0, "Solar"),
    ("Qcells Q.PEAK DUO 410W", "PRODUCT", "PV_MODULE", "ENERGY", "Qcells", "QPD410", 170.0, 285.0, "Solar"),
    ("Enphase IQ8+ Microinverter", "PRODUCT", "MICROINVERTER", "ENERGY", "Enphase", "IQ8PLUS", 140.0, 230.0, "Solar"),
    ("SolarEdge SE7600H Inverter", "PRODUCT", "PV_INVERTER", "ENERGY", "SolarEdge", "SE7600H", 1350.0, 2100.0, "Solar"),
    ("IronRidge XR100 Racking (per kW)", "PRODUCT", "RACKING", "ENERGY", "IronRidge", "XR100", 95.0, 160.0, "Solar"),
    ("PV Install Labor", "SERVICE", "INSTALLATION", "ENERGY", None, None, 1500.0, 3750.0, "Solar"),
    ("Site Survey", "SERVICE", "SITE_SURVEY", "ENERGY", None, None, 150.0, 350.0, "Solar"),
    ("Permit & Interconnection", "SERVICE", "PERMITTING", "ENERGY", None, None, 400.0, 950.0, "Solar"),
    ("System Design & Engineering", "SERVICE", "ENGINEERING", "ENERGY", None, None, 300.0, 800.0, "Solar"),
    ("Tesla Powerwall 3", "PRODUCT", "BATTERY_SYSTEM", "ENERGY", "Tesla", "PW3", 8200.0, 11500.0, "Electrical"),
    (
        "Enphase IQ Battery 5P",
        "PRODUCT",
        "BATTERY_SYSTEM",
        "ENERGY",
        "Enphase",
        "IQBATT5P",
        4100.0,
        6200.0,
        "Electrical",
    ),
    ("Battery Commissioning", "SERVICE", "COMMISSIONING", "ENERGY", None, None, 250.0, 600.0, "Electrical"),
    (
        "200A Main Panel Upgrade",
        "PRODUCT",
        "LOAD_CENTER",
        "ELECTRICAL",
        "Square D",
        "QO142M200",
        650.0,
        1800.0,
        "Electrical",
    ),
    (
        "Carrier Infinity 24 Heat Pump",
        "PRODUCT",
        "HEAT_PUMP",
        "MECHANICAL",
        "Carrier",
        "25VNA4",
        5200.0,
        8900.0,
        "HVAC",
    ),
    (
        "Trane XR16 Air Conditioner",
        "PRODUCT",
        "AIR_CONDITIONER",
        "MECHANICAL",
        "Trane",
        "4TTR6",
        3100.0,
        5400.0,
        "HVAC",
    ),
    ("Goodman Air Handler", "PRODUCT", "AIR_HANDLING_UNIT", "MECHANICAL", "Goodman", "AMVT48", 1400.0, 2600.0, "HVAC"),
    ("ecobee Smart Thermostat", "PRODUCT", "THERMOSTAT", "MECHANICAL", "ecobee", "EB-STATE6", 160.0, 290.0, "HVAC"),
    ("HVAC Install Labor", "SERVICE", "INSTALLATION", "MECHANICAL", None, None, 1200.0, 2800.0, "HVAC"),
    ("Old Equipment Removal", "SERVICE", "REMOVAL", "MECHANICAL", None, None, 150.0, 450.0, "HVAC"),
    ("Annual Maintenance Plan", "SERVICE", "MAINTENANCE", "OTHER", None, None, 90.0, 249.0, "HVAC"),
]

FIRST = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "José",
    "María",
    "Zoë",
    "Renée",
    "Chloé",
    "Björn",
    "Siobhán",
    "Nguyễn",
    "Ana",
    "Luis",
    "Priya",
    "Wei",
    "Fatima",
    "Olumide",
    "Sean",
    "Aoife",
    "Hiroshi",
    "Anaïs",
]
LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "O'Brien",
    "O'Connor",
    "D'Angelo",
    "Müller",
    "Peña",
    "Nuñez",
    "Lefèvre",
    "Ørsted",
    "Đặng",
    "Kowalczyk",
    "Nakamura",
    "Patel",
    "Chen",
    "Okafor",
    "MacDonald",
    "St. John",
    "van der Berg",
    "Schröder",
    "Dubois",
    "Lee",
]
COMPANIES = [
    "Acme Property Holdings LLC",
    "O'Reilly & Sons Roofing",
    "Café Lumière",
    "Blue Ridge Storage Co.",
    "Sunrise Senior Living",
    "Hernández Family Farms",
    "Müller Brewing GmbH",
    "Lakeside Dental Group",
    "Northwind Logistics",
    "Riverside Church",
    "Peak Fitness Inc.",
    "García & Partners CPA",
    "Green Valley School District",
    "Joe's Diner",
    "Smith-Jones Apartments",
    "Ōtsuka Imports",
    "Bayview Marina",
    "Pinecrest HOA",
    "Redwood Veterinary Clinic",
    "Summit Self Storage",
]
TITLES = ["Owner", "Facilities Manager", "Property Manager", "CFO", "Office Manager"]
STREETS = [
    "Main St",
    "Oak Ave",
    "Maple Dr",
    "Cedar Ln",
    "Elm St",
    "Pine Rd",
    "Sunset Blvd",
    "Lakeview Ter",
    "Hillcrest Rd",
    "River Rd",
    "Mission St",
    "Park Pl",
    "Church St",
    "Avenida del Sol",
    "Rue Royale",
]
CITIES = [
    ("Austin", "TX", "787"),
    ("San Antonio", "TX", "782"),
    ("Phoenix", "AZ", "850"),
    ("Tucson", "AZ", "857"),
    ("San Diego", "CA", "921"),
    ("Sacramento", "CA", "958"),
    ("Denver", "CO", "802"),
    ("Las Vegas", "NV", "891"),
    ("Orlando", "FL", "328"),
    ("Tampa", "FL", "336"),
    ("Raleigh", "NC", "276"),
    ("Boston", "MA", "021"),
    ("Newark", "NJ", "071"),
    ("Salt Lake City", "UT", "841"),
    ("Albuquerque", "NM", "871"),
]
UTILITIES = [
    "Austin Energy",
    "CPS Energy",
    "APS",
    "TEP",
    "SDG&E",
    "SMUD",
    "Xcel Energy",
    "NV Energy",
    "Duke Energy",
    "Eversource",
    "PSE&G",
    "Rocky Mountain Power",
    "PNM",
]
CLOSERS = ["Bob Smith", "Ann Lee", "Carl Diaz", "Dana O'Neil", "Eve Müller"]


def _ascii(text: str) -> str:
    """Emails stay ASCII even when names are not."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def _slug(text: str) -> str:
    return "".join(ch for ch in _ascii(text) if ch.isalnum())


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
) -> dict[str, int]:
    """Fill `app` with workflows, catalog items, accounts, contacts, projects (with phase history),
    invoices and payments. Same arguments -> same data. Returns the state summary.

    Projects are spread over every phase of their workflow, so some are past "Install"/"Installation"
    and some before it; invoices exist only for projects past Sale (a deposit) and past install (final).

    `workflows_v1_share` (default: the app's profile switch) of the projects, exactly rounded, are Workflows
    1.0 projects (`stage` instead of `phase`). They are picked by a second generator seeded from `seed`, so the
    main stream, and with it every other record, is the same whatever the share.
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
    ms = 1000

    def rand_time(lo: int, hi: int) -> int:
        return lo + rng.randrange(max(1, (hi - lo) // ms)) * ms

    with app.lock:
        st = app.state
        by_name = {w["name"]: w for w in st.workflows.values()}
        workflows = []
        for name, desc, trade, phases, install in WORKFLOWS:
            wf = by_name.get(name) or insert_workflow(
                st,
                name,
                [{"name": ph, "redSla": 10 + 2 * i, "yellowSla": 5 + i} for i, ph in enumerate(phases)],
                desc,
                start_us - 30 * DAY_US,
            )
            workflows.append((wf, trade, phases.index(install)))
        items_by_name = {c["name"]: c for c in st.catalog_items.values()}
        catalog_by_trade: dict[str, list[dict[str, Any]]] = {}
        for name, typ, cat, group, manu, sku, cost, price, trade in CATALOG:
            item = items_by_name.get(name) or insert_catalog_item(
                st,
                {
                    "name": name,
                    "type": typ,
                    "category": cat,
                    "tradeGroup": group,
                    "manufacturer": manu,
                    "sku": sku,
                    "cost": cost,
                    "price": price,
                    "description": None,
                },
                start_us - 30 * DAY_US,
            )
            catalog_by_trade.setdefault(trade, []).append(item)

        n_accounts = accounts if accounts is not None else max(1, projects // 2) if projects else 0
        account_rows: list[tuple[dict[str, Any], int, str]] = []  # (account, created µs, primary name)
        for i in range(n_accounts):
            city, state, zip3 = rng.choice(CITIES)
            address = f"{rng.randint(10, 9999)} {rng.choice(STREETS)}, {city}, {state} {zip3}{rng.randint(0, 99):02d}"
            phone = f"+1{rng.randint(201, 989)}555{rng.randint(0, 9999):04d}"
            created = rand_time(start_us, end_us - 30 * DAY_US)
            if rng.random() < 0.75:
                first, last = rng.choice(FIRST), rng.choice(LAST)
                title = f"{first} {last}"
                email = f"{_slug(first)}.{_slug(last)}{i}@example.com"
                kind = "RESIDENTIAL"
                contacts = [(title, "Homeowner", email, phone)]
            else:
                title = rng.choice(COMPANIES) + ("" if i < len(COMPANIES) else f" #{i}")
                domain = _slug(title)[:20] + ".example.com"
                email = f"ap@{domain}"
                kind = "COMMERCIAL"
                contacts = [
                    (
                        f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                        rng.choice(TITLES),
                        f"contact{j}.{i}@{domain}",
                        f"+1{rng.randint(201, 989)}555{rng.randint(0, 9999):04d}",
                    )
                    for j in range(rng.randint(1, 2))
                ]
            acc = insert_account(
                st,
                {
                    "title": title,
                    "address": [address],
                    "primaryEmail": email,
                    "primaryPhone": phone,
                    "accountType": kind,
                    "custom": {"lead_source": rng.choice(["Referral", "Web", "Door knock", "Event"])},
                },
                created,
            )
            for name, job, c_email, c_phone in contacts:
                insert_contact(
                    st,
                    {"name": name, "title": job, "emails": [c_email], "phones": [c_phone], "accountIds": [acc["id"]]},
                    created,
                )
            account_rows.append((acc, created, title))

        for n in range(projects):
            acc, acc_created, acc_title = account_rows[n] if n < len(account_rows) else rng.choice(account_rows)
            wf, trade, install_idx = rng.choices(workflows, WORKFLOW_WEIGHTS)[0]
            phases = wf["_phases"]
            k = rng.randrange(len(phases))
            created = rand_time(acc_created, min(end_us, acc_created + 20 * DAY_US))
            steps = [rng.randint(1, 25) * DAY_US + rng.randrange(24) * HOUR_US for _ in range(k)]
            total = sum(steps)
            if created + total > end_us and total:  # squeeze the history so nothing lies in the future
                scale = (end_us - created) / total
                steps = [max(ms, int(s * scale) // ms * ms) for s in steps]
            starts = [created]
            for s in steps:
                starts.append(min(end_us, starts[-1] + s))
            status = "ACTIVE"
            roll = rng.random()
            if roll < 0.03:
                status = "ON_HOLD"
            elif roll < 0.05:
                status = "CANCELLED"
            elif k == len(phases) - 1 and roll < 0.5:
                status = "COMPLETED"
            city_addr = acc["address"][0]
            value = round(rng.uniform(*{"Solar": (15000, 60000), "HVAC": (8000, 25000)}.get(trade, (10000, 30000))), 2)
            base = acc_title.split(" #")[0]
            title = f"{base.split()[-1] if acc['accountType'] == 'RESIDENTIAL' else base} {wf['name']}"
            p = insert_project(
                st,
                {
                    "title": title,
                    "address": [city_addr],
                    "status": status,
                    "isActive": rng.random() >= archived_rate,
                    "primaryEmail": acc["primaryEmail"],
                    "primaryPhone": acc["primaryPhone"],
                    "trades": [trade],
                    "value": value,
                    "size": round(value / 3500, 1) if trade == "Solar" else None,
                    "custom": {"utility": rng.choice(UTILITIES), "sales_closer_name": rng.choice(CLOSERS)},
                    "description": None,
                },
                acc["id"],
                wf["id"],
                created,
                k,
                starts,
                workflows_v1=n in v1_projects,
            )
            if not invoices or k < 1:
                continue
            items = catalog_by_trade[trade]
            # deposit when the sale closes; final invoice once install has started
            plan = [(starts[1], 0.3)] + ([(starts[install_idx], 0.7)] if k >= install_idx else [])
            for issued, share in plan:
                lines: list[tuple[dict[str, Any], str | None]] = [
                    (
                        {
                            "id": 0,
                            "catalogItemId": it["id"],
                            "quantity": rng.randint(1, 24 if it["type"] == "PRODUCT" else 1),
                            "unitCost": it["cost"],
                            "unitPrice": it["price"],
                            "description": it["name"],
                        },
                        None,
                    )
                    for it in rng.sample(items, rng.randint(1, min(3, len(items))))
                ]
                status_inv = "DRAFT" if rng.random() < 0.1 else "SENT"
                inv = insert_invoice(
                    st,
                    ("project", p["id"]),
                    "LINE_ITEMS",
                    lines,
                    status_inv,
                    issued if status_inv != "DRAFT" else None,
                    issued + 30 * DAY_US,
                    f"{'Deposit' if share < 0.5 else 'Final'} - {title}",
                    None,
                    issued,
                )
                if status_inv == "DRAFT":
                    continue
                roll = rng.random()
                if roll < 0.55:
                    amounts = [inv["amount"]]
                elif roll < 0.75:
                    half = round(inv["amount"] / 2, 2)
                    amounts = [half] if rng.random() < 0.5 else [half, round(inv["amount"] - half, 2)]
                else:
                    amounts = []
                paid_at = issued
                for amount in amounts:
                    paid_at = min(end_us, paid_at + rng.randint(1, 20) * DAY_US)
                    if amount <= 0:
                        continue
                    insert_payment(
                        st,
                        inv,
                        amount,
                        rng.choice(["ACH", "CHECK", "CREDIT_CARD", "CASH"]),
                        paid_at,
                        f"CHK-{rng.randint(1000, 99999)}" if rng.random() < 0.3 else None,
                        None,
                        paid_at,
                    )
        st.list_cache.clear()
        return st.summary()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.seed", description="Seed a running Coperniq sandbox via POST /__admin/seed"
    )
    parser.add_argument("--projects", type=int, default=50)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--coperniq-url", default="http://127.0.0.1:8765", help="sandbox root URL (a trailing /v1 is ignored)"
    )
    args = parser.parse_args(argv)
    root = args.coperniq_url.rstrip("/")
    root = root.removesuffix("/v1")
    req = urllib.request.Request(
        f"{root}/__admin/seed",
        method="POST",
        data=json.dumps({"projects": args.projects, "seed": args.seed}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=600) as resp:
        print(resp.read().decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
