"""Deterministic pre-existing QuickBooks data for the Merge sandbox (demo, bench, tests).

The app calls these (on reset, `--seed`, POST /__admin/seed); they never import the app, only the data layer.
"""

from __future__ import annotations

import random
from contextlib import AbstractContextManager
from typing import Any, Protocol

from sandbox.merge_models import MergeData
from sandbox.merge_state import MergeState
from sandbox.profiles import MergeAssumptions

FIRST = [
    "Avery",
    "Blake",
    "Casey",
    "Devon",
    "Emerson",
    "Finley",
    "Harper",
    "Jordan",
    "Kendall",
    "Logan",
    "Morgan",
    "Parker",
    "Quinn",
    "Riley",
    "Sawyer",
    "Taylor",
]
LAST = [
    "Adams",
    "Brooks",
    "Carter",
    "Diaz",
    "Ellis",
    "Foster",
    "Garcia",
    "Hughes",
    "Ito",
    "Jensen",
    "Kim",
    "Lopez",
    "Nguyen",
    "Owens",
    "Patel",
    "Reyes",
]
BUSINESS = ["Roofing", "Builders", "Homes", "Properties", "Electric", "Holdings", "Farms", "Dental"]
#: with `separate_id_spaces`, vendors a solar installer already has: Vendor Ids 1 and 2, so the first customers
#: created (Customer Ids 1, 2, ...) share their remote_id
PRESET_VENDORS = ["Sunbelt Panel Supply", "Lone Star Electrical Wholesale"]
#: with `employees_hold_names`, the company's employees: these DisplayNames can't be used for customers
PRESET_EMPLOYEES = ["Alex Employee", "Sam Technician"]


class SeedTarget(Protocol):
    """What `seed_merge` uses of the app (a `MergeApp` is one): its state and its lock."""

    @property
    def state(self) -> MergeState: ...

    @property
    def lock(self) -> AbstractContextManager[Any]: ...


def seed_assumed_company(data: MergeData, assumptions: MergeAssumptions) -> dict[str, int]:
    """What a QuickBooks company matching the app's switches holds from the start (called on every reset):
    colliding-Id vendors under `separate_id_spaces`, employees under `employees_hold_names`. Nothing by default."""
    vendors = PRESET_VENDORS if assumptions.separate_id_spaces else []
    for name in vendors:
        data.sync_contact("Vendor", data.qbo.create("Vendor", {"DisplayName": name, "CompanyName": name}, notify=False))
    employees = PRESET_EMPLOYEES if assumptions.employees_hold_names else []
    for name in employees:
        given, _, family = name.partition(" ")
        data.qbo.create("Employee", {"DisplayName": name, "GivenName": given, "FamilyName": family}, notify=False)
    return {"vendors": len(vendors), "employees": len(employees)}


def seed_merge(
    app: SeedTarget, *, customers: int = 10, seed: int = 1, jobs_every: int = 0, invoices_every: int = 0
) -> dict[str, Any]:
    """Create `customers` QBO customers (names unique, same for the same seed), optionally a job under every
    `jobs_every`-th customer and an open invoice for every `invoices_every`-th. Returns counts."""
    rng = random.Random(seed)
    data = app.state.data
    made = jobs = invoices = 0
    with app.lock:
        for i in range(customers):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            name = f"{first} {last}" if i % 3 else f"{last} {rng.choice(BUSINESS)}"
            name = f"{name} {seed}-{i + 1:05d}"
            email = f"{first.lower()}.{last.lower()}.{i + 1}@example.com"
            obj = data.qbo.create(
                "Customer",
                {
                    "DisplayName": name,
                    "PrimaryEmailAddr": {"Address": email},
                    "BillAddr": {
                        "Line1": f"{rng.randint(1, 9999)} Main St",
                        "City": "Austin",
                        "CountrySubDivisionCode": "TX",
                        "PostalCode": "78701",
                        "Country": "US",
                    },
                },
                notify=False,
            )
            row = data.sync_contact("Customer", obj)
            made += 1
            if jobs_every and i % jobs_every == 0:
                job = data.qbo.create(
                    "Customer",
                    {
                        "DisplayName": f"{name} - Project",
                        "Job": True,
                        "ParentRef": {"value": obj["Id"]},
                        "BillWithParent": True,
                    },
                    notify=False,
                )
                data.sync_contact("Customer", job)
                jobs += 1
            if invoices_every and i % invoices_every == 0:
                amount = round(rng.uniform(500, 25000), 2)
                data.write_invoice(
                    {
                        "type": "ACCOUNTS_RECEIVABLE",
                        "contact": row["id"],
                        "line_items": [
                            {"description": "Solar installation", "total_amount": amount, **data.default_line_tax()}
                        ],
                    }
                )
                invoices += 1
    return {"customers": made, "jobs": jobs, "invoices": invoices}
