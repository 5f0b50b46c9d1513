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

from singer_sdk.exceptions import ConfigValidationError

from sync_ledger import DEFAULT_LEDGER_PATH
from sync_ledger.alerts import AlertSettings
from sync_ledger.triggers import TriggerSpec, parse_trigger_phases
from sync_ledger.util import ledger_place, url_secrets

from .config_schema import (  # noqa: F401 - re-exported: the settings' names live with the schema
    AMBIGUOUS_MATCHES,
    AUTO_PARALLEL_WRITES,
    CONFIG_JSONSCHEMA,
    DEFAULT_BASE_URL,
    DEFAULT_CUSTOMER_NAME_TEMPLATE,
    DEFAULT_INVOICE_NUMBER_PREFIX,
    DEFAULT_INVOICE_STATUSES,
    DEFAULT_JOB_NAME_TEMPLATE,
    INVOICE_STATUSES,
    MATCHING_STRATEGIES,
    MAX_INVOICE_NUMBER_PREFIX,
    MAX_PARALLEL_WRITES,
    VOID_POLICIES,
)
from .refund_settings import parse_refund_settings
from .tax_settings import DEFAULT_CURRENCY, parse_tax_settings
from .tracking_settings import CategoryRule, parse_tracking_settings


def auto_parallel_writes(requests_per_minute: int | None) -> int:
    """Writes in flight to keep `requests_per_minute` busy when a write takes about a second: one per request/s."""
    low, high = AUTO_PARALLEL_WRITES
    return max(low, min(high, -(-int(requests_per_minute or 300) // 60)))


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
    ambiguous_match: str = "review"
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
    receivable_account: str | None = None
    refund_tax_code: str | None = None
    tracking_category_mapping: tuple[CategoryRule, ...] = ()
    alerts: AlertSettings = field(default_factory=AlertSettings)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(
            s
            for s in (self.merge_api_key, self.account_token, *url_secrets(self.ledger_place), *self.alerts.secrets)
            if s
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Build and validate; raises ConfigValidationError listing every bad setting."""
        errors: list[str] = []
        strategy = config.get("matching_strategy") or "enrich"
        if strategy not in MATCHING_STRATEGIES:
            errors.append(f"matching_strategy: {strategy!r} is not one of {', '.join(MATCHING_STRATEGIES)}")
        ambiguous = config.get("ambiguous_match") or "review"
        if ambiguous not in AMBIGUOUS_MATCHES:
            errors.append(f"ambiguous_match: {ambiguous!r} is not one of {', '.join(AMBIGUOUS_MATCHES)}")

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
        alerts = AlertSettings.from_config(config, errors)

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
            ambiguous_match=ambiguous,
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
            alerts=alerts,
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
