-- One row per Coperniq contact (a customer may come from a contact when the target links one).
with src as (
    select * from {{ source_or_empty('coperniq', 'contacts', {
        'id': 'bigint', 'name': 'varchar', 'emails': 'json', 'phones': 'json', 'updatedat': 'timestamp'}) }}
)
select
    cast(id as varchar) as contact_id,
    'contact' as entity_type,
    nullif(trim(name), '') as contact_name,
    nullif(lower(trim(emails ->> '$[0]')), '') as email,
    nullif(regexp_replace(coalesce(phones ->> '$[0]', ''), '[^0-9]', '', 'g'), '') as phone_digits,
    updatedat as updated_at
from src
where id is not null
qualify row_number() over (partition by id order by updatedat desc nulls last) = 1
