-- One row per Coperniq invoice with money in DECIMAL and the status in the shared vocabulary.
with src as (
    select * from {{ source_or_empty('coperniq', 'invoices', {
        'id': 'bigint', 'uid': 'varchar', 'status': 'varchar', 'amount': 'double', 'amountpaid': 'double',
        'balance': 'double', 'account': 'json', 'record': 'json', 'isarchived': 'boolean',
        'duedate': 'timestamp', 'updatedat': 'timestamp'}) }}
)
select
    cast(id as varchar) as invoice_id,
    uid as invoice_number,
    status as status_raw,
    {{ normalize_invoice_status('status') }} as status,
    {{ money('amount') }} as amount,
    {{ money('coalesce(amountpaid, 0)') }} as amount_paid,
    -- Coperniq has no balance field in its API (the tap may derive one): amount - amountPaid otherwise
    {{ money('coalesce(balance, amount - coalesce(amountpaid, 0))') }} as balance,
    account ->> 'id' as account_id,
    account ->> 'title' as account_name,
    record ->> 'id' as record_id,
    record ->> 'title' as record_title,
    coalesce(isarchived, false) as is_archived,
    duedate as due_date,
    updatedat as updated_at
from src
where id is not null
qualify row_number() over (partition by id order by updatedat desc nulls last) = 1
