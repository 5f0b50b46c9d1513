"""The target's settings as Meltano and the SDK see them: the JSON schema (types, defaults, descriptions, secrets)
and the constants its values are checked against. settings.py turns a config into a validated Settings."""

from __future__ import annotations

from typing import Any

from singer_sdk import typing as th

from sync_ledger import DEFAULT_LEDGER_PATH
from sync_ledger.alerts import ALERT_PROPERTIES
from sync_ledger.util import MERGE_ACCOUNTING_URL

from .refund_settings import REFUND_PROPERTIES
from .tax_settings import TAX_PROPERTIES
from .tracking_settings import TRACKING_PROPERTIES

DEFAULT_BASE_URL = MERGE_ACCOUNTING_URL
MATCHING_STRATEGIES = ("enrich", "replace", "skip")
#: What a doubtful match does (see the ambiguous_match setting).
AMBIGUOUS_MATCHES = ("review", "create_new")
MAX_PARALLEL_WRITES = 16
#: ASSUMPTION (docs/OPERATIONS.md): QuickBooks Online serves at most about 10 concurrent requests per company, so
#: the automatic parallelism stays at or below that even on plans with a higher rate.
AUTO_PARALLEL_WRITES = (4, 10)


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
        "ambiguous_match",
        th.StringType,
        default="review",
        allowed_values=list(AMBIGUOUS_MATCHES),
        description="A client whose QuickBooks match is in doubt (several candidates, another email, the name held "
        "by an unrelated record): `review` waits in the review queue for a person (`coperniq-qbo review`); "
        "`create_new` creates a customer of its own under a suffixed DisplayName.",
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
CONFIG_JSONSCHEMA["properties"].update(ALERT_PROPERTIES)  # alert_webhook_url (secret), alert_on, ..._threshold
