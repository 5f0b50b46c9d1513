-- One row per Coperniq account (client), the Coperniq side of a QuickBooks customer.
with src as (
    select * from {{ source_or_empty('coperniq', 'accounts', {
        'id': 'bigint', 'title': 'varchar', 'primaryemail': 'varchar', 'primaryphone': 'varchar',
        'isactive': 'boolean', 'updatedat': 'timestamp', '_sdc_extracted_at': 'timestamp'}) }}
)
select
    cast(id as varchar) as account_id,
    'account' as entity_type,
    nullif(trim(title), '') as account_name,
    nullif(lower(trim(primaryemail)), '') as email,
    nullif(regexp_replace(coalesce(primaryphone, ''), '[^0-9]', '', 'g'), '') as phone_digits,
    coalesce(isactive, true) as is_active,
    updatedat as updated_at,
    _sdc_extracted_at as extracted_at
from src
where id is not null
qualify row_number() over (partition by id order by updatedat desc nulls last) = 1
