-- One row per Coperniq invoice with money in DECIMAL and the status in the shared vocabulary.
with src as (
    select * from {{ source_or_empty('coperniq', 'invoices', {
        'id': 'bigint', 'uid': 'varchar', 'status': 'varchar', 'amount': 'double', 'amountpaid': 'double',
        'balance': 'double', 'account': 'json', 'record': 'json', 'isarchived': 'boolean',
        'taxid': 'varchar', 'taxrate': 'double',
        'duedate': 'timestamp', 'updatedat': 'timestamp'}) }}
)
select
    cast(id as varchar) as invoice_id,
    uid as invoice_number,
    status as status_raw,
    {{ normalize_invoice_status('status') }} as status,
    -- Coperniq's `amount` is the lines' sum, before tax: a tax (taxId/taxRate) is applied on top of it
    {{ money('amount') }} as amount,
    coalesce({{ money('amountpaid') }}, 0.00) as amount_paid,
    -- Coperniq has no balance field in its API (the tap derives one): amount - amountPaid otherwise, in DECIMAL
    coalesce({{ money('balance') }}, {{ money('amount') }} - coalesce({{ money('amountpaid') }}, 0.00)) as balance,
    -- the invoice's tax (a GET /taxes id) and its rate in percent (8.25 = 8.25 %); NULL: no tax, or the API
    -- gives no tax fields (the two cannot be told apart in the warehouse)
    nullif(trim(taxid), '') as tax_id,
    {{ percent('taxrate') }} as tax_rate,
    account ->> 'id' as account_id,
    account ->> 'title' as account_name,
    record ->> 'id' as record_id,
    record ->> 'title' as record_title,
    coalesce(isarchived, false) as is_archived,
    -- taken back in Coperniq (declined, voided or archived): the forward sync voids, zeroes or leaves it by void_policy
    upper(trim(status)) in ('DECLINED', 'VOID', 'VOIDED') or coalesce(isarchived, false) as is_voided,
    duedate as due_date,
    updatedat as updated_at
from src
where id is not null
qualify row_number() over (partition by id order by updatedat desc nulls last) = 1
