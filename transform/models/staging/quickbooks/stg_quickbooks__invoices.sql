-- One row per Merge accounts-receivable invoice, money in DECIMAL, status in the shared vocabulary.
with src as (
    select * from {{ source_or_empty('quickbooks', 'invoices', {
        'id': 'varchar', 'remote_id': 'varchar', 'number': 'varchar', 'contact': 'varchar', 'type': 'varchar',
        'status': 'varchar', 'total_amount': 'double', 'balance': 'double', 'issue_date': 'timestamp',
        'due_date': 'timestamp', 'remote_was_deleted': 'boolean', 'modified_at': 'timestamp'}) }}
)
select
    id as invoice_id,
    remote_id,
    number as invoice_number,
    contact as contact_id,
    status as status_raw,
    {{ normalize_invoice_status('status') }} as status,
    {{ money('total_amount') }} as total_amount,
    {{ money('balance') }} as balance,
    issue_date,
    due_date,
    coalesce(remote_was_deleted, false) as is_deleted,
    modified_at
from src
where id is not null
  and coalesce(upper(type), 'ACCOUNTS_RECEIVABLE') = 'ACCOUNTS_RECEIVABLE'
qualify row_number() over (partition by id order by modified_at desc nulls last) = 1
