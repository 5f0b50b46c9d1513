-- Every invoice of either side, paired through the sync ledger's id map, with amount, balance and status per
-- side and what disagrees. reconciliation_status:
--   matched | mismatched        linked, both present (mismatch_reasons says what differs)
--   missing_in_quickbooks       linked, but the QuickBooks invoice is gone (deleted in QBO or never landed)
--   missing_in_coperniq         linked, but the Coperniq invoice is gone
--   unlinked_link               the ledger marks the link deleted/voided (kept for audit, not a problem)
--   only_in_coperniq | only_in_quickbooks   no link (not synced, e.g. invoice_sync off or project before trigger)
{% set tol = var('amount_tolerance') %}
with id_map as (
    select * from {{ ref('stg_ledger__id_map') }}
    where source_type = 'invoice' and target_type = 'invoice' and target_id is not null
),
links as (
    select coperniq_invoice_id, quickbooks_invoice_id, origin, link_status, linked_at
    from (
        select source_id as coperniq_invoice_id, target_id as quickbooks_invoice_id, origin, link_status,
               updated_at as linked_at
        from id_map where source_system = 'coperniq' and target_system = 'quickbooks'
        union all
        select target_id, source_id, origin, link_status, updated_at
        from id_map where source_system = 'quickbooks' and target_system = 'coperniq'
    )
    qualify row_number() over (partition by coperniq_invoice_id, quickbooks_invoice_id order by linked_at desc nulls last) = 1
),
cq as (select * from {{ ref('stg_coperniq__invoices') }}),
qb as (select * from {{ ref('stg_quickbooks__invoices') }}),
paired as (
    select
        'link:' || l.coperniq_invoice_id || ':' || l.quickbooks_invoice_id as reconciliation_key,
        l.coperniq_invoice_id, l.quickbooks_invoice_id, l.origin, l.link_status, l.linked_at,
        cq.invoice_id is not null as in_coperniq,
        qb.invoice_id is not null and not qb.is_deleted as in_quickbooks,
        cq.invoice_number as coperniq_number, qb.invoice_number as quickbooks_number, qb.remote_id as quickbooks_remote_id,
        cq.account_name as coperniq_account_name, qb.contact_id as quickbooks_contact_id,
        cq.amount as coperniq_amount, qb.total_amount as quickbooks_amount,
        cq.balance as coperniq_balance, qb.balance as quickbooks_balance,
        cq.status as coperniq_status, qb.status as quickbooks_status,
        cq.status_raw as coperniq_status_raw, qb.status_raw as quickbooks_status_raw,
        cq.updated_at as coperniq_updated_at, qb.modified_at as quickbooks_modified_at
    from links l
    left join cq on cq.invoice_id = l.coperniq_invoice_id
    left join qb on qb.invoice_id = l.quickbooks_invoice_id
),
only_cq as (
    select
        'coperniq:' || cq.invoice_id, cq.invoice_id, null, 'coperniq', null, null,
        true, false,
        cq.invoice_number, null, null, cq.account_name, null,
        cq.amount, null, cq.balance, null, cq.status, null, cq.status_raw, null, cq.updated_at, null
    from cq where cq.invoice_id not in (select coperniq_invoice_id from links)
),
only_qb as (
    select
        'quickbooks:' || qb.invoice_id, null, qb.invoice_id, 'quickbooks', null, null,
        false, true,
        null, qb.invoice_number, qb.remote_id, null, qb.contact_id,
        null, qb.total_amount, null, qb.balance, null, qb.status, null, qb.status_raw, null, qb.modified_at
    from qb where not qb.is_deleted and qb.invoice_id not in (select quickbooks_invoice_id from links)
),
all_rows as (
    select * from paired
    union all select * from only_cq
    union all select * from only_qb
),
compared as (
    select
        *,
        coperniq_amount - quickbooks_amount as amount_diff,
        coperniq_balance - quickbooks_balance as balance_diff,
        in_coperniq and in_quickbooks and {{ amounts_differ('coperniq_amount', 'quickbooks_amount') }} as is_amount_mismatch,
        in_coperniq and in_quickbooks and {{ amounts_differ('coperniq_balance', 'quickbooks_balance') }} as is_balance_mismatch,
        -- QuickBooks has no real draft: an invoice pushed "as draft" may read open there, so draft~open is no mismatch
        in_coperniq and in_quickbooks and coalesce(coperniq_status, '') <> coalesce(quickbooks_status, '')
            and not (coperniq_status in ('draft', 'open') and quickbooks_status in ('draft', 'open')) as is_status_mismatch
    from all_rows
)
select
    reconciliation_key,
    coperniq_invoice_id,
    quickbooks_invoice_id,
    quickbooks_remote_id,
    origin,
    link_status,
    linked_at,
    coperniq_number,
    quickbooks_number,
    coperniq_account_name,
    quickbooks_contact_id,
    coperniq_amount,
    quickbooks_amount,
    amount_diff,
    coperniq_balance,
    quickbooks_balance,
    balance_diff,
    coperniq_status,
    quickbooks_status,
    coperniq_status_raw,
    quickbooks_status_raw,
    is_amount_mismatch,
    is_balance_mismatch,
    is_status_mismatch,
    {{ reconciliation_columns([('amount', 'is_amount_mismatch'), ('balance', 'is_balance_mismatch'), ('status', 'is_status_mismatch')]) }},
    coperniq_updated_at,
    quickbooks_modified_at
from compared
