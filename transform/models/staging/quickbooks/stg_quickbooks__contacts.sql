-- One row per Merge contact (QuickBooks customer, vendor or job), deleted ones flagged.
with src as (
    select * from {{ source_or_empty('quickbooks', 'contacts', {
        'id': 'varchar', 'remote_id': 'varchar', 'name': 'varchar', 'email_address': 'varchar',
        'phone_numbers': 'json', 'is_customer': 'boolean', 'is_supplier': 'boolean', 'status': 'varchar',
        'remote_was_deleted': 'boolean', 'modified_at': 'timestamp'}) }}
)
select
    id as contact_id,
    remote_id,
    nullif(trim(name), '') as contact_name,
    nullif(lower(trim(email_address)), '') as email,
    nullif(regexp_replace(coalesce(phone_numbers ->> '$[0].number', ''), '[^0-9]', '', 'g'), '') as phone_digits,
    coalesce(is_customer, not coalesce(is_supplier, false)) as is_customer,
    coalesce(is_supplier, false) as is_supplier,
    upper(status) as status,
    coalesce(remote_was_deleted, false) or upper(coalesce(status, '')) = 'ARCHIVED' as is_deleted,
    modified_at
from src
where id is not null
qualify row_number() over (partition by id order by modified_at desc nulls last) = 1
