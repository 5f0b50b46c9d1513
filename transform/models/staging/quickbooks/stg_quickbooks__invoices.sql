-- One row per Merge accounts-receivable invoice, money in DECIMAL, status in the shared vocabulary.
with src as (
    select * from {{ source_or_empty('quickbooks', 'invoices', {
        'id': 'varchar', 'remote_id': 'varchar', 'number': 'varchar', 'contact': 'varchar', 'type': 'varchar',
        'status': 'varchar', 'total_amount': 'double', 'balance': 'double', 'sub_total': 'double',
        'total_tax_amount': 'double', 'inclusive_of_tax': 'boolean', 'tracking_categories': 'json',
        'line_items': 'json',
        'issue_date': 'timestamp', 'due_date': 'timestamp', 'remote_was_deleted': 'boolean',
        'modified_at': 'timestamp'}) }}
)
select
    id as invoice_id,
    remote_id,
    number as invoice_number,
    contact as contact_id,
    status as status_raw,
    {{ normalize_invoice_status('status') }} as status,
    -- Merge's status VOID (QuickBooks keeps a voided invoice at zero); it may show only after Merge's next sync
    coalesce(upper(trim(status)) = 'VOID', false) as is_void,
    {{ money('total_amount') }} as total_amount,
    {{ money('balance') }} as balance,
    {{ money('sub_total') }} as sub_total,
    -- NULL when the stream did not land the field (an older tap or warehouse): the tax is then not comparable
    {{ money('total_tax_amount') }} as tax_amount,
    inclusive_of_tax,
    -- Merge TrackingCategory ids (QuickBooks Class / Department) as a JSON list; NULL when not landed
    tracking_categories,
    -- the categories on its live lines (a line's Class, where the company tracks classes per row), distinct ids as a
    -- JSON list; NULL when the lines did not land with them (an older tap)
    case when json_type(line_items) = 'ARRAY' and json_array_length(line_items) > 0
          and list_bool_or(list_transform(cast(line_items as json[]),
              lambda l: json_extract(l, '$.tracking_categories') is not null))
        then to_json(list_distinct(flatten(list_transform(
            list_filter(cast(line_items as json[]),
                lambda l: not coalesce(try_cast(json_extract_string(l, '$.remote_was_deleted') as boolean), false)),
            lambda l: coalesce(try_cast(json_extract(l, '$.tracking_categories') as varchar[]), [])))))
    end as line_tracking_categories,
    issue_date,
    due_date,
    coalesce(remote_was_deleted, false) as is_deleted,
    modified_at
from src
where id is not null
  and coalesce(upper(type), 'ACCOUNTS_RECEIVABLE') = 'ACCOUNTS_RECEIVABLE'
qualify row_number() over (partition by id order by modified_at desc nulls last) = 1
