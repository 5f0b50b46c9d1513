"""The Coperniq seeder's generators, one per resource: workflows, catalog items, taxes, accounts (with their
contacts), projects (with their phase history), invoices (and their tax) and payments.

Why one random stream passed through: `seed_coperniq` (sandbox/seed.py) hands the same `random.Random` to each
generator in turn, so the order of the draws, and with it every seeded record, is fixed by the order of the calls
here. A change that adds, drops or reorders a draw changes all data after it (so the taxes, added later, draw
nothing: an invoice's tax follows from its id). They write through `coperniq_writes` only and expect the caller to
hold the app's lock.
"""

from __future__ import annotations

import random
import unicodedata
from typing import Any

from sandbox.coperniq_state import DAY_US, CoperniqState
from sandbox.coperniq_writes import (
    apply_invoice_tax,
    insert_account,
    insert_catalog_item,
    insert_contact,
    insert_invoice,
    insert_payment,
    insert_project,
    insert_tax,
    insert_workflow,
)
from sandbox.seed_data import (
    CATALOG,
    CITIES,
    CLOSERS,
    COMPANIES,
    FIRST,
    INVOICE_TAX_BY_ID_MOD_10,
    LAST,
    STREETS,
    TAXES,
    TITLES,
    UTILITIES,
    WORKFLOW_WEIGHTS,
    WORKFLOWS,
)

HOUR_US = DAY_US // 24
MS = 1000

#: (workflow, trade, index of its install phase)
Workflow = tuple[dict[str, Any], str, int]
#: (account, created µs, primary name)
AccountRow = tuple[dict[str, Any], int, str]


def _ascii(text: str) -> str:
    """Emails stay ASCII even when names are not."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def _slug(text: str) -> str:
    return "".join(ch for ch in _ascii(text) if ch.isalnum())


def rand_time(rng: random.Random, lo: int, hi: int) -> int:
    """A whole-millisecond instant in [lo, hi) (lo itself if the range is shorter than a millisecond)."""
    return lo + rng.randrange(max(1, (hi - lo) // MS)) * MS


def seed_workflows(st: CoperniqState, start_us: int) -> list[Workflow]:
    """The WORKFLOWS (a workflow of the same name is reused), created 30 days before `start_us`."""
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
    return workflows


def seed_catalog(st: CoperniqState, start_us: int) -> dict[str, list[dict[str, Any]]]:
    """The CATALOG (an item of the same name is reused), grouped by trade."""
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
    return catalog_by_trade


def seed_taxes(st: CoperniqState, start_us: int) -> dict[str, dict[str, Any]]:
    """The TAXES (a tax of the same name is reused), created 30 days before `start_us`, by name."""
    by_name = {t["name"]: t for t in st.taxes.values()}
    for name, rate, archived in TAXES:
        if name not in by_name:
            by_name[name] = insert_tax(st, name, rate, archived, start_us - 30 * DAY_US)
    return by_name


def seed_invoice_taxes(st: CoperniqState, taxes: dict[str, dict[str, Any]], after_id: int) -> None:
    """Give every invoice with an id above `after_id` (those this seeding made) its tax by INVOICE_TAX_BY_ID_MOD_10,
    as created: `updatedAt` and `amount` stay as they are."""
    for iid, inv in st.invoices.items():
        name = INVOICE_TAX_BY_ID_MOD_10.get(iid % 10) if iid > after_id else None
        if name is not None:
            apply_invoice_tax(inv, taxes[name])
    st.touch("invoices")


def seed_accounts(
    st: CoperniqState, rng: random.Random, n_accounts: int, start_us: int, end_us: int
) -> list[AccountRow]:
    """`n_accounts` accounts, 3 in 4 residential (one contact), the rest commercial (one or two contacts)."""
    account_rows: list[AccountRow] = []
    for i in range(n_accounts):
        city, state, zip3 = rng.choice(CITIES)
        address = f"{rng.randint(10, 9999)} {rng.choice(STREETS)}, {city}, {state} {zip3}{rng.randint(0, 99):02d}"
        phone = f"+1{rng.randint(201, 989)}555{rng.randint(0, 9999):04d}"
        created = rand_time(rng, start_us, end_us - 30 * DAY_US)
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
    return account_rows


def phase_starts(rng: random.Random, created: int, k: int, end_us: int) -> list[int]:
    """Start instants of phases 0..k: 1-25 days (plus some hours) apart, squeezed so none lies after `end_us`."""
    steps = [rng.randint(1, 25) * DAY_US + rng.randrange(24) * HOUR_US for _ in range(k)]
    total = sum(steps)
    if created + total > end_us and total:  # squeeze the history so nothing lies in the future
        scale = (end_us - created) / total
        steps = [max(MS, int(s * scale) // MS * MS) for s in steps]
    starts = [created]
    for s in steps:
        starts.append(min(end_us, starts[-1] + s))
    return starts


def seed_projects(
    st: CoperniqState,
    rng: random.Random,
    projects: int,
    account_rows: list[AccountRow],
    workflows: list[Workflow],
    catalog_by_trade: dict[str, list[dict[str, Any]]],
    end_us: int,
    *,
    invoices: bool,
    archived_rate: float,
    v1_projects: set[int],
) -> None:
    """`projects` projects spread over every phase of their workflow; the first ones get one account each, the
    rest a random account. With `invoices`, each project past Sale gets its invoices (see `seed_invoices`)."""
    for n in range(projects):
        acc, acc_created, acc_title = account_rows[n] if n < len(account_rows) else rng.choice(account_rows)
        wf, trade, install_idx = rng.choices(workflows, WORKFLOW_WEIGHTS)[0]
        phases = wf["_phases"]
        k = rng.randrange(len(phases))
        created = rand_time(rng, acc_created, min(end_us, acc_created + 20 * DAY_US))
        starts = phase_starts(rng, created, k, end_us)
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
        seed_invoices(st, rng, p, title, catalog_by_trade[trade], starts, k, install_idx, end_us)


def seed_invoices(
    st: CoperniqState,
    rng: random.Random,
    p: dict[str, Any],
    title: str,
    items: list[dict[str, Any]],
    starts: list[int],
    k: int,
    install_idx: int,
    end_us: int,
) -> None:
    """A deposit when the sale closes and a final invoice once install has started; 1 in 10 stays a DRAFT."""
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
        seed_payments(st, rng, inv, issued, end_us)


def seed_payments(st: CoperniqState, rng: random.Random, inv: dict[str, Any], issued: int, end_us: int) -> None:
    """Paid in full (55 %), by half or in two halves (20 %), or not at all; 1 to 20 days apart, never after end."""
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
