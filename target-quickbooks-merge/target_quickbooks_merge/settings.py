"""Typed, validated view of the target's config.

The SDK validates types against the JSON schema; this module adds the cross-field rules the schema cannot express
(one trigger per workflow, both keys present, ...) so a bad meltano.yml fails before any record is read, with a
message naming the setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError

from sync_ledger import DEFAULT_LEDGER_PATH
from sync_ledger.triggers import TriggerSpec, parse_trigger_phases
from sync_ledger.util import MERGE_ACCOUNTING_URL, ledger_place, url_secrets

from .refund_settings import REFUND_PROPERTIES, parse_refund_settings
from .tax_settings import DEFAULT_CURRENCY, TAX_PROPERTIES, parse_tax_settings
from .tracking_settings import TRACKING_PROPERTIES, CategoryRule, parse_tracking_settings

DEFAULT_BASE_URL = MERGE_ACCOUNTING_URL
MATCHING_STRATEGIES = ("enrich", "replace", "skip")
MAX_PARALLEL_WRITES = 16
#: ASSUMPTION (docs/OPERATIONS.md): QuickBooks Online serves at most about 10 concurrent requests per company, so
#: the automatic parallelism stays at or below that even on plans with a higher rate.
AUTO_PARALLEL_WRITES = (4, 10)


def auto_parallel_writes(requests_per_minute: int | None) -> int:
    """Writes in flight to keep `requests_per_minute` busy when a write takes about a second: one per request/s."""
    low, high = AUTO_PARALLEL_WRITES
    return max(low, min(high, -(-int(requests_per_minute or 300) // 60)))


DEFAULT_JOB_NAME_TEMPLATE = "{title} ({number})"
DEFAULT_CUSTOMER_NAME_TEMPLATE = "{title}"
#: Coperniq invoice statuses. QuickBooks has no draft invoice: whatever is pushed is a real receivable.
INVOICE_STATUSES = ("DRAFT", "SENT", "DECLINED", "PAID", "PARTIALLY_PAID", "OVERDUE")
DEFAULT_INVOICE_STATUSES = ("SENT", "PARTIALLY_PAID", "PAID", "OVERDUE")

#: Before Coperniq's invoice uid in QuickBooks: QuickBooks' own auto-numbering starts at 1001, as Coperniq's does.
DEFAULT_INVOICE_NUMBER_PREFIX = "CQ-"
MAX_INVOICE_NUMBER_PREFIX = 10

#: What a pushed invoice that Coperniq takes back (declined, back to draft, archived) becomes in QuickBooks (voids.py).
VOID_POLICIES = ("void", "leave", "zero_and_note")

CONFIG_JSONSCHEMA: dict[str, Any] = th.PropertiesList(
    th.Property(
        "merge_api_key",
        th.StringType,
        required=True,
        secret=True,
        description="Merge access key (Authorization: Bearer).",
    ),
    th.Property(
        "account_token",
        th.StringType,
        required=True,
        secret=True,
        description="Merge linked-account token of the QuickBooks Online company (X-Account-Token).",
    ),
    th.Property(
        "base_url",
        th.StringType,
        default=DEFAULT_BASE_URL,
        description="Merge Accounting API base: US https://api.merge.dev/api/accounting/v1, "
        "EU https://api-eu.merge.dev/api/accounting/v1, APAC https://api-ap.merge.dev/api/accounting/v1.",
    ),
    th.Property(
        "trigger_phases",
        th.ArrayType(
            th.ObjectType(
                th.Property("workflow", th.CustomType({"type": ["string", "integer"]})),
                th.Property("phase", th.CustomType({"type": ["string", "integer"]})),
                additional_properties=False,
            )
        ),
        default=[],
        description=(
            'Phases that start the sync, one per workflow: [{"workflow": <id or name>, "phase": <id or name>}].'
        ),
    ),
    th.Property(
        "invoice_sync",
        th.BooleanType,
        default=False,
        description="Also push Coperniq invoices and their payments for synced projects (QuickBooks has no "
        "draft invoices: a pushed invoice is a receivable at once).",
    ),
    th.Property(
        "invoice_statuses",
        th.ArrayType(th.StringType),
        default=list(DEFAULT_INVOICE_STATUSES),
        description="Coperniq invoice statuses that are pushed (of " + ", ".join(INVOICE_STATUSES) + "); "
        "DRAFT and DECLINED are not pushed by default.",
    ),
    th.Property(
        "matching_strategy",
        th.StringType,
        default="enrich",
        allowed_values=list(MATCHING_STRATEGIES),
        description="What to do with an existing QuickBooks record found when no link exists yet.",
    ),
    th.Property(
        "dry_run", th.BooleanType, default=False, description="Print the plan and write nothing to QuickBooks."
    ),
    th.Property(
        "backfill",
        th.BooleanType,
        default=False,
        description="Also sync projects that entered their trigger phase before the sync was enabled.",
    ),
    th.Property(
        "trigger_since",
        th.DateTimeType,
        description="With backfill off: projects count only if they entered the trigger phase at/after this "
        "time (default: the first run of this target against the ledger).",
    ),
    th.Property(
        "max_requests_per_minute",
        th.IntegerType,
        default=300,
        description="Client-side request ceiling for this linked account (Merge plans: 100/400/600 per min).",
    ),
    th.Property(
        "max_parallel_writes",
        th.IntegerType,
        description="QuickBooks creates and updates sent at once (1-16). Writes are latency bound (a real Merge "
        "write takes 0.3-1 s), so several in flight are needed to use the request budget; "
        "max_requests_per_minute still caps the rate. Default: one per request/s the plan allows (4 to 10).",
    ),
    th.Property(
        "ledger_path",
        th.StringType,
        default=DEFAULT_LEDGER_PATH,
        description="DuckDB file with the id map, staging and the integration log.",
    ),
    th.Property(
        "ledger_url",
        th.StringType,
        secret=True,
        description="postgresql://user:password@host:5432/db: the ledger on PostgreSQL instead of ledger_path "
        "(containers, workers with an empty disk, forward and reverse at once). A secret: never printed.",
    ),
    th.Property(
        "company",
        th.StringType,
        description="The tenant this run belongs to in a ledger shared by many companies (e.g. its Merge linked "
        "account id); a run reads and writes only its company's links, log and intents. Unset: the default one.",
    ),
    th.Property(
        "item_mapping",
        th.ObjectType(additional_properties=True),
        default={},
        description="Coperniq catalog item id or name -> QuickBooks item name or Merge/QBO id.",
    ),
    th.Property(
        "default_item",
        th.StringType,
        description="QuickBooks item (name or id) for invoice lines without a mapping; unset -> failed row.",
    ),
    th.Property(
        "payment_account",
        th.StringType,
        default="Undeposited Funds",
        description="Deposit account (name or id) for payments.",
    ),
    th.Property(
        "customer_name_template",
        th.StringType,
        default=DEFAULT_CUSTOMER_NAME_TEMPLATE,
        description="QBO DisplayName of a client; fields: {title} {number} {id}.",
    ),
    th.Property(
        "job_name_template",
        th.StringType,
        default=DEFAULT_JOB_NAME_TEMPLATE,
        description="QBO DisplayName of a project (job); fields: {title} {number} {id} {client}.",
    ),
    th.Property(
        "fail_on_error",
        th.BooleanType,
        default=False,
        description="Exit non-zero at the end (after state and ledger are saved) if any row failed.",
    ),
    th.Property(
        "invoice_number_prefix",
        th.StringType,
        default=DEFAULT_INVOICE_NUMBER_PREFIX,
        description="Put before Coperniq's invoice number in QuickBooks (DocNumber). QuickBooks numbers its "
        "own invoices from 1001, as Coperniq does, so unprefixed numbers collide with the bookkeeper's. Only "
        "new invoices get it: a pushed invoice keeps its number.",
    ),
    th.Property(
        "log_sdk_metrics",
        th.BooleanType,
        default=False,
        description="Also log the Singer SDK's METRIC lines (one per batch); off by default.",
    ),
    th.Property(
        "unreachable_timeout",
        th.NumberType,
        default=120,
        description="Seconds rows may keep failing because Merge does not answer (after each request's own "
        "retries) before the run stops, non-zero, with one line saying where.",
    ),
    th.Property(
        "progress_interval",
        th.NumberType,
        default=30,
        description="Seconds between progress log lines during the reconcile pass.",
    ),
    *TAX_PROPERTIES,
    *TRACKING_PROPERTIES,
    th.Property(
        "void_policy",
        th.StringType,
        default="void",
        allowed_values=list(VOID_POLICIES),
        description="A pushed invoice whose Coperniq status leaves invoice_statuses (declined, back to draft) or "
        "that is archived: void voids it in QuickBooks (an invoice sent again later is created anew, with a "
        "suffixed number, as QuickBooks cannot un-void); zero_and_note zeroes its lines with a memo saying why "
        "(restored when it is sent again); leave logs it and leaves it unchanged.",
    ),
    *REFUND_PROPERTIES,
).to_dict()


@dataclass(frozen=True)
class Settings:
    """Validated settings used by the reconcile pass."""

    merge_api_key: str
    account_token: str
    base_url: str = DEFAULT_BASE_URL
    trigger_phases: tuple[TriggerSpec, ...] = ()
    invoice_sync: bool = False
    invoice_statuses: tuple[str, ...] = DEFAULT_INVOICE_STATUSES
    matching_strategy: str = "enrich"
    dry_run: bool = False
    backfill: bool = False
    trigger_since: datetime | None = None
    max_requests_per_minute: int = 300
    max_parallel_writes: int = 4
    ledger_place: str = DEFAULT_LEDGER_PATH  # ledger_url (a secret: see `secrets`), else ledger_path
    company: str | None = None
    item_mapping: Mapping[str, str] = field(default_factory=dict)
    default_item: str | None = None
    payment_account: str = "Undeposited Funds"
    customer_name_template: str = DEFAULT_CUSTOMER_NAME_TEMPLATE
    job_name_template: str = DEFAULT_JOB_NAME_TEMPLATE
    fail_on_error: bool = False
    progress_interval: float = 30.0
    unreachable_timeout: float = 120.0
    invoice_number_prefix: str = DEFAULT_INVOICE_NUMBER_PREFIX
    tax_mode: str = "auto"
    tax_code_mapping: Mapping[str, str] = field(default_factory=dict)
    default_tax_code: str | None = None
    currency: str = DEFAULT_CURRENCY
    void_policy: str = "void"
    refund_policy: str = "void"
    refund_account: str | None = None
    refund_item: str | None = None
    tracking_category_mapping: tuple[CategoryRule, ...] = ()

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.merge_api_key, self.account_token, *url_secrets(self.ledger_place)) if s)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Build and validate; raises ConfigValidationError listing every bad setting."""
        errors: list[str] = []
        strategy = config.get("matching_strategy") or "enrich"
        if strategy not in MATCHING_STRATEGIES:
            errors.append(f"matching_strategy: {strategy!r} is not one of {', '.join(MATCHING_STRATEGIES)}")

        triggers, trigger_errors = parse_trigger_phases(config.get("trigger_phases"))
        errors.extend(trigger_errors)

        prefix = config.get("invoice_number_prefix")
        prefix = DEFAULT_INVOICE_NUMBER_PREFIX if prefix is None else str(prefix)
        if len(prefix) > MAX_INVOICE_NUMBER_PREFIX or any(c in prefix for c in "\t\r\n"):
            errors.append(
                f"invoice_number_prefix: at most {MAX_INVOICE_NUMBER_PREFIX} characters without tabs or "
                f"newlines (QuickBooks keeps 21 for the whole number), got {prefix!r}"
            )

        try:
            ledger_where, company = ledger_place(config)
        except ValueError as exc:
            ledger_where, company = DEFAULT_LEDGER_PATH, None
            errors.append(str(exc))

        rpm = config.get("max_requests_per_minute", 300)
        if rpm is not None and (not isinstance(rpm, int) or rpm <= 0):
            errors.append(f"max_requests_per_minute: must be a positive integer, got {rpm!r}")

        parallel = config.get("max_parallel_writes")
        if parallel is not None and (
            not isinstance(parallel, int) or isinstance(parallel, bool) or not 1 <= parallel <= MAX_PARALLEL_WRITES
        ):
            errors.append(f"max_parallel_writes: must be an integer from 1 to {MAX_PARALLEL_WRITES}, got {parallel!r}")

        since = config.get("trigger_since")
        since_dt: datetime | None = None
        if since:
            try:
                since_dt = parse_dt(str(since))
            except ValueError:
                errors.append(f"trigger_since: not an ISO 8601 date-time: {since!r}")

        statuses = config.get("invoice_statuses")
        valid = ", ".join(INVOICE_STATUSES)
        if statuses is None:
            statuses = DEFAULT_INVOICE_STATUSES
        elif not isinstance(statuses, (list, tuple)) or not all(isinstance(v, str) for v in statuses):
            errors.append(f"invoice_statuses: must be a list of Coperniq invoice statuses ({valid})")
            statuses = DEFAULT_INVOICE_STATUSES
        statuses = tuple(v.strip().upper() for v in statuses)
        unknown = [v for v in statuses if v not in INVOICE_STATUSES]
        if unknown:
            errors.append(f"invoice_statuses: unknown status(es) {', '.join(unknown)}; valid: {valid}")

        mapping = config.get("item_mapping") or {}
        if not isinstance(mapping, Mapping):
            errors.append("item_mapping: must be an object {coperniq item id or name: quickbooks item}")
            mapping = {}

        for name, fields in (
            ("job_name_template", {"title", "number", "id", "client"}),
            ("customer_name_template", {"title", "number", "id"}),
        ):
            template = config.get(name)
            if template:
                try:
                    template.format(**dict.fromkeys(fields, "x"))
                except (KeyError, IndexError, ValueError) as exc:
                    errors.append(f"{name}: invalid template {template!r} ({exc}); fields: {sorted(fields)}")

        taxes = parse_tax_settings(config, errors)
        tracking = parse_tracking_settings(config, errors)

        void_policy = config.get("void_policy") or "void"
        if void_policy not in VOID_POLICIES:
            errors.append(f"void_policy: {void_policy!r} is not one of {', '.join(VOID_POLICIES)}")
        refunds = parse_refund_settings(config, errors)

        if errors:
            raise ConfigValidationError("Config validation failed", errors=errors)

        return cls(
            merge_api_key=str(config.get("merge_api_key") or ""),
            account_token=str(config.get("account_token") or ""),
            base_url=str(config.get("base_url") or DEFAULT_BASE_URL).rstrip("/"),
            trigger_phases=tuple(triggers),
            invoice_sync=bool(config.get("invoice_sync", False)),
            invoice_statuses=statuses,
            matching_strategy=strategy,
            dry_run=bool(config.get("dry_run", False)),
            backfill=bool(config.get("backfill", False)),
            trigger_since=since_dt,
            max_requests_per_minute=int(rpm or 300),
            max_parallel_writes=int(parallel) if parallel else auto_parallel_writes(rpm),
            ledger_place=ledger_where,
            company=company,
            item_mapping={str(k): str(v) for k, v in mapping.items()},
            default_item=config.get("default_item") or None,
            payment_account=str(config.get("payment_account") or "Undeposited Funds"),
            customer_name_template=config.get("customer_name_template") or DEFAULT_CUSTOMER_NAME_TEMPLATE,
            job_name_template=config.get("job_name_template") or DEFAULT_JOB_NAME_TEMPLATE,
            fail_on_error=bool(config.get("fail_on_error", False)),
            progress_interval=float(config.get("progress_interval") or 30),
            unreachable_timeout=float(config.get("unreachable_timeout", 120)),
            invoice_number_prefix=prefix,
            **taxes,
            void_policy=str(void_policy),
            **refunds,
            tracking_category_mapping=tracking,
        )


def parse_dt(value: str) -> datetime:
    """ISO 8601 -> aware UTC datetime (naive values are taken as UTC)."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)
