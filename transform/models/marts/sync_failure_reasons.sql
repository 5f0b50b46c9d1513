-- Failure reasons ranked by how often they occur (ids and numbers masked so one cause groups together),
-- per direction and stream, with how many rows and runs they hit and when they were last seen.
with failures as (
    select * from {{ ref('stg_ledger__sync_log') }} where action = 'failed'
),
grouped as (
    select
        direction,
        stream,
        coalesce(reason_pattern, '(no reason logged)') as reason_pattern,
        count(*) as failures,
        count(distinct source_id) as distinct_rows,
        count(distinct run_id) as runs,
        min(logged_at) as first_seen_at,
        max(logged_at) as last_seen_at,
        arg_max(reason, logged_at) as latest_example
    from failures
    group by all
)
select
    md5(concat_ws('|', direction, stream, reason_pattern)) as reason_key,
    rank() over (order by failures desc, distinct_rows desc) as reason_rank,
    *
from grouped
