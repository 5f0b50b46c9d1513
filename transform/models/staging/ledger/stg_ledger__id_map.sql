-- The id map with normalized system/type names; one row per (source, target system).
select
    lower(source_system) as source_system,
    -- Merge model names may come plural or capitalised ("Invoice", "invoices"): singular lower case
    regexp_replace(lower(source_type), 's$', '') as source_type,
    cast(source_id as varchar) as source_id,
    lower(target_system) as target_system,
    regexp_replace(lower(target_type), 's$', '') as target_type,
    cast(target_id as varchar) as target_id,
    cast(target_remote_id as varchar) as target_remote_id,
    lower(coalesce(origin, source_system)) as origin,
    lower(coalesce(status, 'active')) as link_status,
    cast(updated_at as timestamp) as updated_at
from {{ source('ledger', 'id_map') }}
where source_id is not null
qualify row_number() over (
    partition by lower(source_system), regexp_replace(lower(source_type), 's$', ''), cast(source_id as varchar), lower(target_system)
    order by updated_at desc nulls last) = 1
