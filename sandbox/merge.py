"""Merge.dev Accounting API sandbox with one QuickBooks Online linked account (plus any linked via Link).

Run: `python -m sandbox.merge --port 8766 [--profile pessimistic]` -> base URL http://127.0.0.1:8766/api/accounting/v1.
Wire formats follow /work/shared/reference/merge_api.md; the README "Merge" section lists every assumption, and
the ones the docs leave open are switches of `sandbox.profiles.MergeAssumptions` (`profile=` / `--profile`).

This module is the sandbox app: the API (`merge_api.MergeApi`) plus what only a sandbox has, the admin helpers
("things done directly in QuickBooks"), their `/__admin/` HTTP equivalents, and the CLI. Below it, never
importing it: `merge_api` (auth, rate limits, route table), `merge_endpoints` (common models, passthrough),
`merge_linking` (linked accounts, Link flow), `merge_query` (query parameters, list filters), `merge_state`
(linked accounts, tokens, pending syncs), `merge_seed`; and the data: `merge_models`, `merge_qbo`, `merge_store`,
`merge_tax` (the company's tax setup and currency), `merge_voids` (voids, passthrough reads of invoices/payments).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from sandbox._server import Request, Response, SandboxServer, is_loopback
from sandbox.merge_admin import admin_response
from sandbox.merge_api import ORG_LEVEL, MergeApi
from sandbox.merge_endpoints import IDEMPOTENCY_TTL, PASSTHROUGH_METHODS
from sandbox.merge_linking import CATEGORIES, LINK_DIR, SYNC_MODELS, account_details
from sandbox.merge_qbo import QboError
from sandbox.merge_schema import WriteError
from sandbox.merge_seed import seed_merge
from sandbox.merge_state import (
    API,
    INTEGRATION,
    LINKED_ACCOUNT_STATUSES,
    RELINK_NEEDED,
    LinkedAccount,
    MergeState,
    detail,
    write_errors,
)
from sandbox.merge_store import Row
from sandbox.merge_tax import COMPANY_TAX
from sandbox.merge_tracking import add_category
from sandbox.profiles import PROFILES

#: Names this module had before the split and still serves.
__all__ = [
    "API",
    "CATEGORIES",
    "IDEMPOTENCY_TTL",
    "INTEGRATION",
    "LINKED_ACCOUNT_STATUSES",
    "LINK_DIR",
    "ORG_LEVEL",
    "PASSTHROUGH_METHODS",
    "RELINK_NEEDED",
    "SYNC_MODELS",
    "LinkedAccount",
    "MergeApp",
    "MergeState",
    "detail",
    "main",
    "write_errors",
]


class MergeApp(MergeApi):
    """Merge Accounting API + QBO linked account emulator (see README "Merge" for behaviour and assumptions)."""

    # --- admin (sandbox only) ---------------------------------------------------------------------
    def set_linked_account_status(self, status: str, account_token: str | None = None) -> dict[str, Any]:
        """Admin: what Merge would report after e.g. a revoked QuickBooks connection (RELINK_NEEDED). Returns the
        account details; relinking through Link sets COMPLETE again."""
        if status not in LINKED_ACCOUNT_STATUSES:
            raise ValueError(f"status must be one of {', '.join(LINKED_ACCOUNT_STATUSES)}, not {status!r}")
        with self.lock:
            account = self.state.accounts.get(account_token or self.default_account_token)
            if account is None or account.deleted:
                raise KeyError(account_token or self.default_account_token)
            account.status = status
            return account_details(account, self.realm_id, self.company_name)

    def set_rate_limit(self, per_minute: int) -> None:
        """Requests per minute per linked account (the limiter starts over)."""
        self.rate_limit_per_minute = per_minute
        self.limiter.set_windows([(per_minute, 60.0)])
        self.limiter.reset()

    def _contact_ref(self, ref: str | None) -> Row | None:
        """A contact by Merge id or QBO Id."""
        if ref is None:
            return None
        table = self.state.contacts
        return table.get(str(ref)) or table.by_remote_id(str(ref))

    def add_contact(
        self,
        name: str,
        *,
        email: str | None = None,
        is_customer: bool = True,
        is_supplier: bool = False,
        parent: str | None = None,
        bill_with_parent: bool = False,
        qbo_id: str | None = None,
        **qbo_fields: Any,
    ) -> dict[str, Any]:
        """A customer (or job, with `parent` = Merge id or QBO Id; a vendor with is_supplier and not is_customer)
        created directly in QuickBooks; synced. `qbo_id` picks its QBO Id, e.g. a vendor sharing a customer's Id
        under `separate_id_spaces` (refused when the Id is taken in that id space)."""
        with self.lock:
            body: dict[str, Any] = {"DisplayName": name, **qbo_fields}
            if email:
                body["PrimaryEmailAddr"] = {"Address": email}
            if parent is not None:
                parent_row = self._contact_ref(parent)
                body.update(
                    Job=True,
                    ParentRef={"value": parent_row["remote_id"] if parent_row else str(parent)},
                    BillWithParent=bill_with_parent,
                )
            entity = "Vendor" if is_supplier and not is_customer else "Customer"
            try:
                obj = self.state.qbo.create(
                    entity, body, notify=False, qbo_id=str(qbo_id) if qbo_id is not None else None
                )
            except QboError as exc:
                raise ValueError(str(exc)) from None
            return self.state.data.serialize("contacts", self.state.data.sync_contact(entity, obj))

    def add_employee(self, name: str, *, qbo_id: str | None = None, **qbo_fields: Any) -> dict[str, Any]:
        """A QuickBooks employee (only with `employees_hold_names`): its DisplayName is taken for customers and
        vendors too, and it never becomes a Merge Contact. Returns the QBO Employee object."""
        if not self.assumptions.employees_hold_names:
            raise ValueError("this company has no employees (switch employees_hold_names is off)")
        with self.lock:
            try:
                obj = self.state.qbo.create(
                    "Employee",
                    {"DisplayName": name, **qbo_fields},
                    notify=False,
                    qbo_id=str(qbo_id) if qbo_id is not None else None,
                )
            except QboError as exc:
                raise ValueError(str(exc)) from None
            return dict(obj)

    def add_item(self, name: str, **fields: Any) -> dict[str, Any]:
        """An item created in QuickBooks."""
        with self.lock:
            try:
                return self.state.data.serialize("items", self.state.data.add_item(name, **fields))
            except WriteError as exc:
                raise ValueError(str(exc)) from None

    def add_account(self, name: str, **fields: Any) -> dict[str, Any]:
        """A ledger account created in QuickBooks."""
        with self.lock:
            return self.state.data.serialize("accounts", self.state.data.add_account(name, **fields))

    def add_tracking_category(
        self, name: str, category_type: str = "CLASS", *, parent: str | None = None, status: str = "ACTIVE"
    ) -> dict[str, Any]:
        """A class or department (location) created in QuickBooks; `parent` (Merge id or name): a sub-category."""
        with self.lock:
            row = add_category(self.state.data, name, category_type, parent=parent, status=status)
            return self.state.data.serialize("tracking-categories", row)

    def create_invoice(
        self,
        contact: str,
        line_items: list[dict[str, Any]] | None = None,
        *,
        amount: float | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """An invoice entered in QuickBooks (same QBO rules as the API). `amount` = one "Services" line."""
        with self.lock:
            row = self._contact_ref(contact)
            lines = line_items if line_items is not None else [self.state.data.default_line(amount)]
            model = {
                "type": "ACCOUNTS_RECEIVABLE",
                "contact": row["id"] if row else contact,
                "line_items": lines,
                **fields,
            }
            try:
                inv, _ = self.state.data.write_invoice(model)
            except WriteError as exc:
                raise ValueError(str(exc)) from None
            return self.state.data.serialize("invoices", inv)

    def create_payment(
        self,
        contact: str,
        total_amount: float,
        *,
        applied_to: list[tuple[str, float]] | None = None,
        account: str | None = None,
        transaction_date: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """A payment received in QuickBooks; `applied_to` = [(invoice id, amount)]. Default account: Undeposited
        Funds; default date: today."""
        with self.lock:
            row = self._contact_ref(contact)
            deposit = account
            if not deposit:  # every company starts with it (MergeData), and accounts are never removed
                undeposited = self.state.data.find("accounts", "Undeposited Funds")
                if undeposited is None:
                    raise ValueError("this company has no Undeposited Funds account")
                deposit = undeposited["id"]
            model = {
                "contact": row["id"] if row else contact,
                "account": deposit,
                "total_amount": total_amount,
                "transaction_date": transaction_date or time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime()),
                "applied_to_lines": [
                    {"related_object_id": inv, "related_object_type": "INVOICE", "applied_amount": f"{amt:.2f}"}
                    for inv, amt in (applied_to or [])
                ],
                **fields,
            }
            try:
                pay, _ = self.state.data.write_payment(model)
            except WriteError as exc:
                raise ValueError(str(exc)) from None
            return self.state.data.serialize("payments", pay)

    def void_invoice(self, invoice_id: str) -> dict[str, Any]:
        """An invoice voided in QuickBooks (its payments stay, unapplied); Merge sees it at once."""
        with self.lock:
            return self.state.data.serialize("invoices", self.state.data.void_invoice(invoice_id))

    def void_payment(self, payment_id: str) -> dict[str, Any]:
        """A payment voided in QuickBooks (amount zero, its invoices reopen); Merge sees it at once."""
        with self.lock:
            return self.state.data.serialize("payments", self.state.data.void_payment(payment_id))

    def deposit_payment(self, payment_id: str) -> dict[str, Any]:
        """A payment the bookkeeper put on a bank deposit in QuickBooks: from now on QuickBooks refuses to change or
        void it (6540) until it is taken off the deposit (not emulated)."""
        with self.lock:
            row = self.state.table("payments").get(payment_id)
            if row is None:
                raise KeyError(payment_id)
            row["_deposited"] = True
            return self.state.data.serialize("payments", row)

    def voids(self) -> list[dict[str, Any]]:
        """Every void QuickBooks accepted, oldest first: {at, via ("passthrough" | "admin"), entity, merge_id,
        qbo_id, sync_token (after), changed (False: it was void already), also_changed [{model, id}]}."""
        with self.lock:
            return [dict(v) for v in self.state.data.voids]

    def record(self, model: str, id_: str) -> dict[str, Any]:
        """A row as Merge shows it (with remote_data) next to QuickBooks' own object, and whether a QuickBooks
        change to it still waits for Merge's next sync."""
        with self.lock:
            data = self.state.data
            row = data.t(model).get(id_)
            if row is None:
                raise KeyError(id_)
            return {
                "merge": data.serialize(model, row, remote_data=True),
                "qbo": data.qbo_view(model, row)[1],
                "pending_sync": data.merge_copy(row) is not row,
            }

    def delete(self, model: str, id_: str) -> dict[str, Any]:
        """Deleted in QuickBooks: Merge keeps the row with remote_was_deleted=true."""
        with self.lock:
            return self.state.data.serialize(model, self.state.data.delete(model, id_))

    def update(self, model: str, id_: str, **fields: Any) -> dict[str, Any]:
        """An edit made in QuickBooks (Merge common-model field names), e.g. update("contacts", id, name=...)."""
        with self.lock:
            row = self.state.table(model).get(id_)
            if row is None:
                raise KeyError(id_)
            writer = {
                "contacts": self.state.data.write_contact,
                "invoices": self.state.data.write_invoice,
                "payments": self.state.data.write_payment,
                "items": self.state.data.write_item,
            }[model]
            try:
                writer(fields, row)
            except WriteError as exc:
                raise ValueError(str(exc)) from None
            return self.state.data.serialize(model, row)

    def admin(self, req: Request) -> Response | None:
        """HTTP equivalents of the admin helpers (sandbox/merge_admin.py)."""
        return admin_response(self, req)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.merge", description="Merge Accounting API sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--rate-limit-per-minute", type=int, default=600)
    parser.add_argument("--api-key", default="sandbox-merge-key")
    parser.add_argument("--account-token", default="sandbox-account-token")
    parser.add_argument("--company-name", default="Sandbox Solar Co")
    parser.add_argument("--seed", type=int, default=None, help="seed pre-existing QBO customers (with --customers)")
    parser.add_argument("--customers", type=int, default=0)
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="optimistic",
        help="how to read what Merge's docs leave open (sandbox/profiles.py)",
    )
    parser.add_argument(
        "--passthrough-visible-after-sync",
        action="store_true",
        default=None,
        help="override that switch of the profile (on)",
    )
    parser.add_argument(
        "--company-tax",
        choices=COMPANY_TAX,
        default="us_manual",
        help="the QuickBooks company's tax setup: US manual sales tax, US Automated Sales Tax, or non-US (GST/VAT)",
    )
    parser.add_argument(
        "--currency", default=None, help="the company's home currency (USD; non_us: CAD, the default, or GBP)"
    )
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error(f"refusing to bind to non-loopback host {args.host!r}")
    app = MergeApp(
        api_key=args.api_key,
        account_token=args.account_token,
        rate_limit_per_minute=args.rate_limit_per_minute,
        company_name=args.company_name,
        passthrough_visible_after_sync=args.passthrough_visible_after_sync,
        profile=args.profile,
        company_tax=args.company_tax,
        currency=args.currency,
    )
    if args.customers or args.seed is not None:
        seed_merge(app, customers=args.customers or 10, seed=args.seed if args.seed is not None else 1)
    server = SandboxServer(app, args.host, args.port)
    company = app.company()
    print(
        f"Merge sandbox on {server.root_url}{API} (profile {args.profile}; company {company['company_tax']} "
        f"{company['currency']}; Link: {server.root_url}/link/initialize.js)",
        flush=True,
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
