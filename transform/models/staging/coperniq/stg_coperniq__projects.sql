-- One row per Coperniq project, with the whole landed row as JSON (`project_json`, keys lower-cased by the loader):
-- tracking_category_mapping names any project field (workflowName, trades, custom.branch), so the mart reads it
-- from there. Lands only when the reconcile selection includes tap-coperniq's projects stream (reconcile.py does).
with src as (
    select row_json from {{ source_rows_json('coperniq', 'projects') }}
)
select
    row_json ->> '$.id' as project_id,
    nullif(trim(row_json ->> '$.title'), '') as project_title,
    nullif(trim(row_json ->> '$.workflowname'), '') as workflow_name,
    row_json as project_json,
    try_cast(row_json ->> '$.updatedat' as timestamp) as updated_at
from src
where row_json ->> '$.id' is not null
qualify row_number() over (partition by row_json ->> '$.id' order by try_cast(row_json ->> '$.updatedat' as timestamp) desc nulls last) = 1
