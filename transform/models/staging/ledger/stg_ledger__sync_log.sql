-- The integration log with a stable row key and the failure reason normalized for grouping.
select
    md5(concat_ws('|', run_id, cast(logged_at as varchar), direction, stream, source_id, action,
        cast(row_number() over (order by logged_at, run_id) as varchar))) as log_key,
    run_id,
    cast(logged_at as timestamp) as logged_at,
    lower(direction) as direction,
    stream,
    cast(source_id as varchar) as source_id,
    lower(action) as action,
    nullif(trim(reason), '') as reason,
    -- "HTTP 400 on invoice 4711: Duplicate Name Exists (id 88)" and "... invoice 4712 ..." group together
    nullif(trim(regexp_replace(regexp_replace(coalesce(reason, ''),
        '[0-9a-fA-F]{8}-[0-9a-fA-F-]{27,}', '<uuid>', 'g'), '(^|[^A-Za-z])[0-9]+', '\1<n>', 'g')), '') as reason_pattern,
    target_id,
    request_id
from {{ source('ledger', 'sync_log') }}
