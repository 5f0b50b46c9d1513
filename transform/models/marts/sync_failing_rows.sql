-- Source rows whose latest outcome is a failure, with how many runs they have been failing in since their last
-- success. is_persistent: failing in more than var('failing_runs_threshold') runs (alert on these).
{% set threshold = var('failing_runs_threshold') %}
with log as (select * from {{ ref('stg_ledger__sync_log') }} where source_id is not null),
per_row as (
    select
        direction, stream, source_id,
        max(logged_at) filter (where action <> 'failed' and action <> 'planned') as last_success_at,
        arg_max(action, logged_at) as last_action
    from log
    group by all
),
failing as (
    select
        l.direction, l.stream, l.source_id,
        any_value(p.last_success_at) as last_success_at,
        count(distinct l.run_id) as failing_runs,
        count(*) as failures,
        min(l.logged_at) as first_failed_at,
        max(l.logged_at) as last_failed_at,
        arg_max(l.reason, l.logged_at) as last_reason,
        arg_max(l.reason_pattern, l.logged_at) as last_reason_pattern
    from log l
    join per_row p using (direction, stream, source_id)
    where l.action = 'failed'
      and p.last_action = 'failed'
      and (p.last_success_at is null or l.logged_at > p.last_success_at)
    group by all
),
staging as (select * from {{ ref('stg_ledger__staging') }})
select
    md5(concat_ws('|', f.direction, f.stream, f.source_id)) as row_key,
    f.direction,
    f.stream,
    f.source_id,
    f.failing_runs,
    f.failures,
    f.first_failed_at,
    f.last_failed_at,
    f.last_success_at,
    f.last_reason,
    f.last_reason_pattern,
    s.staging_status,
    s.attempts as staging_attempts,
    f.failing_runs > {{ threshold }} as is_persistent
from failing f
left join staging s
  on s.source_system = case f.direction when 'forward' then 'coperniq' when 'reverse' then 'quickbooks' end
 and s.stream = f.stream and s.record_id = f.source_id
