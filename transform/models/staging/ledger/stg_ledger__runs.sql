-- Target runs; runs only seen in the log (crashed before start_run's row was kept) are added.
with runs as (
    select
        run_id,
        lower(direction) as direction,
        cast(started_at as timestamp) as started_at,
        cast(finished_at as timestamp) as finished_at,
        coalesce(dry_run, false) as dry_run,
        lower(coalesce(status, case when finished_at is null then 'running' else 'success' end)) as run_status
    from {{ source('ledger', 'runs') }}
    qualify row_number() over (partition by run_id order by started_at desc nulls last) = 1
),
log_only as (
    select run_id, min(lower(direction)) as direction, min(logged_at) as started_at, max(logged_at) as finished_at,
           false as dry_run, 'unknown' as run_status
    from {{ source('ledger', 'sync_log') }}
    where run_id not in (select run_id from runs)
    group by run_id
)
select * from runs
union all
select * from log_only
