"""Merge sandbox state: linked accounts, Link tokens, idempotency records, pending syncs, and the data.

Why a module of its own: the app (sandbox/merge.py), its endpoint groups (merge_endpoints, merge_linking), its
admin surface (merge_admin) and the seeder (merge_seed) all work on this state, and none of them may import the
app, so the dependency runs one way (sandbox.merge -> those -> here).
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from sandbox._controls import Stats
from sandbox._server import Request, Response
from sandbox.merge_models import MergeData
from sandbox.merge_qbo import QboCompany
from sandbox.merge_store import Table, iso, now_us
from sandbox.profiles import MergeAssumptions

API = "/api/accounting/v1"
INTEGRATION: dict[str, Any] = {
    "name": "QuickBooks Online",
    "abbreviated_name": "QuickBooks",
    "categories": ["accounting"],
    "image": "https://merge-api-production.s3.amazonaws.com/media/quickbooks.png",
    "square_image": "https://merge-api-production.s3.amazonaws.com/media/quickbooks_square.png",
    "color": "#2CA01C",
    "slug": "quickbooks-online",
    "api_endpoints_to_documentation_urls": {},
    "webhook_setup_guide_url": None,
    "category_beta_status": {},
}
#: AccountDetailsAndActionsStatusEnum in merge-accounting-openapi.yaml (also the `/linked-accounts?status=` options)
LINKED_ACCOUNT_STATUSES = ("COMPLETE", "INCOMPLETE", "RELINK_NEEDED", "IDLE")
RELINK_NEEDED = "RELINK_NEEDED"
#: QBO transactions whose passthrough changes (voids) can wait for Merge's next sync: entity -> table
TRANSACTION_TABLES = {"Invoice": "invoices", "Payment": "payments"}


@dataclass
class LinkedAccount:
    """One Merge linked account (all of them point at the same emulated QBO company)."""

    token: str
    end_user_origin_id: str
    end_user_organization_name: str
    end_user_email_address: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    completed_at: str = field(default_factory=lambda: iso(now_us()))
    deleted: bool = False
    status: str = "COMPLETE"  # one of LINKED_ACCOUNT_STATUSES
    webhook_listener_url: str = field(
        default_factory=lambda: f"https://api.merge.dev/api/integrations/webhook-listener/{secrets.token_hex(16)}"
    )


@dataclass
class MergeState:
    """Everything the sandbox holds; `app.state` (tests assert on it)."""

    data: MergeData
    accounts: dict[str, LinkedAccount] = field(default_factory=dict)  # account token -> account
    link_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    public_tokens: dict[str, str] = field(default_factory=dict)  # public token -> account token
    idempotency: dict[tuple[str, str], tuple[str, int, Any, float]] = field(default_factory=dict)
    pending: dict[tuple[str, str], float | None] = field(default_factory=dict)  # (entity, QBO Id) -> due time
    last_sync_us: int = field(default_factory=now_us)

    @property
    def qbo(self) -> QboCompany:
        return self.data.qbo

    def table(self, name: str) -> Table:
        return self.data.t(name)

    @property
    def contacts(self) -> Table:
        return self.data.t("contacts")

    @property
    def invoices(self) -> Table:
        return self.data.t("invoices")

    @property
    def payments(self) -> Table:
        return self.data.t("payments")

    @property
    def items(self) -> Table:
        return self.data.t("items")

    def sync_pending(self, *, only_due: bool = False) -> int:
        """Run a 'Merge sync': copy pending QBO changes into the common models. Returns how many."""
        now = time.monotonic()
        done = 0
        for key, due in list(self.pending.items()):
            if only_due and (due is None or due > now):
                continue
            del self.pending[key]
            if key[0] in TRANSACTION_TABLES:  # a passthrough void: Merge's copy catches up
                row = self.data.t(TRANSACTION_TABLES[key[0]]).by_remote_id(key[1], key[0])
                if row is not None and self.data.publish(TRANSACTION_TABLES[key[0]], row):
                    done += 1
                continue
            obj = self.qbo.get(*key)
            if obj is not None:
                self.data.sync_contact(key[0], obj)
                done += 1
        if not only_due:
            self.last_sync_us = now_us()
        return done

    def linked_account(self, req: Request) -> LinkedAccount:
        """The linked account of an authenticated, account-scoped request; also runs a due periodic sync."""
        if self.pending:
            self.sync_pending(only_due=True)
        return self.accounts[req.headers["x-account-token"].strip()]


def detail(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """DRF-style error body, as Merge answers auth/404/429 errors."""
    return Response(status, {"detail": message}, headers or {})


def write_errors(errors: list[dict[str, Any]], warnings: list[dict[str, Any]] | None = None) -> Response:
    """Merge's write-error envelope (400 with `errors` and `warnings` of problem objects)."""
    return Response(400, {"warnings": warnings or [], "errors": errors})


class MergeHost(Protocol):
    """What the endpoint groups use of `MergeApp`, so they need not import it.

    Read through properties: the app replaces `state` on every reset, so handlers look it up on every call.
    """

    @property
    def state(self) -> MergeState: ...

    @property
    def assumptions(self) -> MergeAssumptions: ...

    @property
    def realm_id(self) -> str: ...

    @property
    def stats(self) -> Stats: ...

    @property
    def company_name(self) -> str: ...
