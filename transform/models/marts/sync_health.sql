-- One row per sync run (both directions): what it did per action, its failure rate, its most frequent failure
-- reason, how many of its failing rows have been failing for more than var('failing_runs_threshold') runs, and a
-- health verdict: ok | warning (some rows failed) | failing (run failed, or every row failed) | running.
with runs as (select * from {{ ref('stg_ledger__runs') }}),
log as (select * from {{ ref('stg_ledger__sync_log') }}),
counts as (
    select
        run_id,
        count(*) filter (where action = 'created') as created,
        count(*) filter (where action = 'updated') as updated,
        count(*) filter (where action = 'linked') as linked,
        count(*) filter (where action = 'skipped') as skipped,
        count(*) filter (where action = 'failed') as failed,
        count(*) filter (where action = 'deleted') as deleted,
        count(*) filter (where action = 'planned') as planned,
        count(*) as total_actions,
        count(distinct case when action = 'failed' then stream || ':' || coalesce(source_id, '') end) as failed_rows
    from log
    group by run_id
),
top_reason as (
    select run_id, reason_pattern as top_failure_reason, n as top_failure_count
    from (
        select run_id, reason_pattern, count(*) as n from log
        where action = 'failed' group by run_id, reason_pattern
    )
    qualify row_number() over (partition by run_id order by n desc, reason_pattern) = 1
),
persistent as (
    select f.run_id, count(distinct r.row_key) as persistent_failing_rows
    from log f
    join {{ ref('sync_failing_rows') }} r
      on r.direction = f.direction and r.stream = f.stream and r.source_id = f.source_id
    where f.action = 'failed' and r.is_persistent
    group by f.run_id
)
select
    runs.run_id,
    runs.direction,
    runs.started_at,
    runs.finished_at,
    date_diff('millisecond', runs.started_at, runs.finished_at) / 1000.0 as duration_seconds,
    runs.dry_run,
    runs.run_status,
    coalesce(c.created, 0) as created,
    coalesce(c.updated, 0) as updated,
    coalesce(c.linked, 0) as linked,
    coalesce(c.skipped, 0) as skipped,
    coalesce(c.failed, 0) as failed,
    coalesce(c.deleted, 0) as deleted,
    coalesce(c.planned, 0) as planned,
    coalesce(c.total_actions, 0) as total_actions,
    round(coalesce(c.failed, 0) / nullif(c.total_actions, 0), 4) as failure_rate,
    t.top_failure_reason,
    coalesce(t.top_failure_count, 0) as top_failure_count,
    coalesce(p.persistent_failing_rows, 0) as persistent_failing_rows,
    case
        when runs.run_status = 'running' then 'running'
        when runs.run_status in ('failed', 'error', 'aborted') then 'failing'
        when coalesce(c.failed, 0) > 0 and c.failed = c.total_actions then 'failing'
        when coalesce(c.failed, 0) > 0 then 'warning'
        else 'ok'
    end as health,
    row_number() over (partition by runs.direction order by runs.started_at desc nulls last, runs.run_id) = 1 as is_latest_run
from runs
left join counts c on c.run_id = runs.run_id
left join top_reason t on t.run_id = runs.run_id
left join persistent p on p.run_id = runs.run_id
