-- The targets' staging table without payloads: processing status and attempts per source record.
select
    lower(source_system) as source_system,
    stream,
    cast(record_id as varchar) as record_id,
    cast(received_at as timestamp) as received_at,
    lower(status) as staging_status,
    coalesce(attempts, 0) as attempts,
    last_error
from {{ source('ledger', 'staging') }}
qualify row_number() over (partition by lower(source_system), stream, cast(record_id as varchar) order by received_at desc nulls last) = 1
