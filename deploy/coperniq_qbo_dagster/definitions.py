"""The Dagster code location: one partition per company, the forward and reverse legs as partitioned jobs, the
schedules of meltano.yml, and `sync_all_companies` (every company's forward leg in one run, a step per company, on
the multiprocess executor).

Concurrency: each run is tagged `coperniq_qbo/lane = <company>/<direction>`; deploy/dagster.yaml's run queue admits
one run per lane, so a company's forward and reverse legs may run together but never two of one leg. The ledger
refuses an overlapping run too (on PostgreSQL), so a run launched past the queue fails fast instead of syncing twice.
Retries: a failed leg is retried with exponential backoff (COPERNIQ_QBO_RETRIES, COPERNIQ_QBO_RETRY_DELAY seconds).
"""

# No `from __future__ import annotations`: Dagster reads the ops' annotations (context, outputs) at definition time.
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import yaml
from dagster import (
    Backoff,
    Definitions,
    DynamicOut,
    DynamicOutput,
    Jitter,
    OpExecutionContext,
    Output,
    RetryPolicy,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    StaticPartitionsDefinition,
    in_process_executor,
    job,
    multiprocess_executor,
    op,
    static_partitioned_config,
)

from .companies import Company, load_companies
from .legs import JOBS, PROJECT_ROOT, LegResult, prepare_system_db, run_leg

LANE_TAG = "coperniq_qbo/lane"
DIRECTION_TAG = "coperniq_qbo/direction"


def retry_policy() -> RetryPolicy:
    return RetryPolicy(
        max_retries=int(os.environ.get("COPERNIQ_QBO_RETRIES", "3")),
        delay=float(os.environ.get("COPERNIQ_QBO_RETRY_DELAY", "30")),
        backoff=Backoff.EXPONENTIAL,
        jitter=Jitter.PLUS_MINUS,
    )


def _company(key: str) -> Company:
    """A company by key, read from the companies file when the step runs (a worker sees the current file)."""
    for company in load_companies():
        if company.key == key:
            return company
    raise KeyError(f"company {key!r} is not in the companies file any more")


def _leg(context: OpExecutionContext, key: str, direction: str) -> Output[dict[str, Any]]:
    result: LegResult = run_leg(_company(key), direction, on_line=context.log.info)
    meta = result.metadata()
    return Output(meta, metadata=meta)


# ---------------------------------------------------------------------------------------------------- per company

COMPANIES = load_companies()
KEYS = [c.key for c in COMPANIES]
companies_partitions = StaticPartitionsDefinition(KEYS)


def _partitioned(direction: str) -> Any:
    @static_partitioned_config(
        partition_keys=KEYS, tags_for_partition_key_fn=lambda key: {LANE_TAG: f"{key}/{direction}"}
    )
    def config(partition_key: str) -> Mapping[str, Any]:
        return {}

    return config


@op(retry_policy=retry_policy())
def forward_leg(context: OpExecutionContext) -> Output[dict[str, Any]]:
    """tap-coperniq -> target-quickbooks-merge for this run's company (its partition)."""
    return _leg(context, context.partition_key, "forward")


@op(retry_policy=retry_policy())
def reverse_leg(context: OpExecutionContext) -> Output[dict[str, Any]]:
    """tap-quickbooks-merge -> target-coperniq for this run's company (its partition)."""
    return _leg(context, context.partition_key, "reverse")


@job(config=_partitioned("forward"), tags={DIRECTION_TAG: "forward"}, executor_def=in_process_executor)
def forward_job() -> None:
    forward_leg()


@job(config=_partitioned("reverse"), tags={DIRECTION_TAG: "reverse"}, executor_def=in_process_executor)
def reverse_job() -> None:
    reverse_leg()


# ---------------------------------------------------------------------------------------------------- every company


@op(out=DynamicOut(str))
def each_company() -> Iterator[DynamicOutput[str]]:
    """The companies of the file, one step each; Meltano's system database is migrated first, once."""
    prepare_system_db()
    for company in load_companies():
        yield DynamicOutput(company.key, mapping_key=re.sub(r"[^A-Za-z0-9_]", "_", company.key))


@op(retry_policy=retry_policy())
def company_forward(context: OpExecutionContext, key: str) -> Output[dict[str, Any]]:
    return _leg(context, key, "forward")


@job(
    tags={DIRECTION_TAG: "forward", LANE_TAG: "all/forward"},
    executor_def=multiprocess_executor.configured(
        {"max_concurrent": int(os.environ.get("COPERNIQ_QBO_MAX_CONCURRENT", "4"))}
    ),
)
def sync_all_companies() -> None:
    """Every company's forward leg, a step each, several at once (a backfill, or a schedule for all)."""
    each_company().map(company_forward)


# ---------------------------------------------------------------------------------------------------- schedules


def meltano_schedules() -> list[ScheduleDefinition]:
    """meltano.yml's schedules, each launching its job for every company (one run per partition)."""
    spec = yaml.safe_load((PROJECT_ROOT / "meltano.yml").read_text()) or {}
    by_job = {JOBS["forward"]: forward_job, JOBS["reverse"]: reverse_job}
    out = []
    for entry in spec.get("schedules") or []:
        target = by_job.get(entry.get("job"))
        if target is None or not entry.get("interval"):
            continue

        def every_company(context: ScheduleEvaluationContext) -> Iterator[RunRequest]:
            stamp = context.scheduled_execution_time.isoformat()
            for key in KEYS:
                yield RunRequest(run_key=f"{key}:{stamp}", partition_key=key)

        out.append(
            ScheduleDefinition(
                name=str(entry["name"]).replace("-", "_"),
                cron_schedule=str(entry["interval"]),
                job=target,
                execution_fn=every_company,
            )
        )
    return out


defs = Definitions(jobs=[forward_job, reverse_job, sync_all_companies], schedules=meltano_schedules())
