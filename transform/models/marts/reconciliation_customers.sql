-- Every customer of either side: Coperniq accounts (and linked contacts) against QuickBooks customers (Merge
-- contacts), paired through the sync ledger's id map; name, email and phone per side and what disagrees.
-- reconciliation_status: matched | mismatched | missing_in_quickbooks | missing_in_coperniq | unlinked_link |
-- only_in_coperniq | only_in_quickbooks (see reconciliation_invoices for the meaning of each).
with id_map as (
    select * from {{ ref('stg_ledger__id_map') }} where target_id is not null
),
links as (
    select coperniq_type, coperniq_id, quickbooks_contact_id, origin, link_status, linked_at
    from (
        select source_type as coperniq_type, source_id as coperniq_id, target_id as quickbooks_contact_id,
               origin, link_status, updated_at as linked_at
        from id_map
        where source_system = 'coperniq' and target_system = 'quickbooks' and target_type = 'customer'
          and source_type in ('account', 'client', 'contact')
        union all
        select case when target_type = 'contact' then 'contact' else 'account' end, target_id, source_id,
               origin, link_status, updated_at
        from id_map
        where source_system = 'quickbooks' and target_system = 'coperniq' and source_type in ('contact', 'customer')
          and target_type in ('account', 'client', 'contact')
    )
    qualify row_number() over (partition by coperniq_type, coperniq_id, quickbooks_contact_id order by linked_at desc nulls last) = 1
),
-- any QuickBooks contact the ledger knows (customers, jobs of projects, ...) is not "only in QuickBooks"
known_quickbooks_ids as (
    select target_id as contact_id from id_map where target_system = 'quickbooks'
    union
    select source_id from id_map where source_system = 'quickbooks'
),
cq as (
    select account_id as coperniq_id, 'account' as coperniq_type, account_name as name, email, phone_digits
    from {{ ref('stg_coperniq__accounts') }}
    union all
    select contact_id, 'contact', contact_name, email, phone_digits from {{ ref('stg_coperniq__contacts') }}
),
qb as (select * from {{ ref('stg_quickbooks__contacts') }}),
paired as (
    select
        'link:' || l.coperniq_type || ':' || l.coperniq_id || ':' || l.quickbooks_contact_id as reconciliation_key,
        l.coperniq_type, l.coperniq_id, l.quickbooks_contact_id, qb.remote_id as quickbooks_remote_id,
        l.origin, l.link_status, l.linked_at,
        cq.coperniq_id is not null as in_coperniq,
        qb.contact_id is not null and not qb.is_deleted as in_quickbooks,
        cq.name as coperniq_name, qb.contact_name as quickbooks_name,
        cq.email as coperniq_email, qb.email as quickbooks_email,
        cq.phone_digits as coperniq_phone, qb.phone_digits as quickbooks_phone
    from links l
    left join cq on cq.coperniq_type = case when l.coperniq_type = 'contact' then 'contact' else 'account' end
                and cq.coperniq_id = l.coperniq_id
    left join qb on qb.contact_id = l.quickbooks_contact_id
),
only_cq as (
    select 'coperniq:account:' || cq.coperniq_id, 'account', cq.coperniq_id, null, null, 'coperniq', null, null,
           true, false, cq.name, null, cq.email, null, cq.phone_digits, null
    from cq
    where cq.coperniq_type = 'account'
      and cq.coperniq_id not in (select coperniq_id from links where coperniq_type in ('account', 'client'))
),
only_qb as (
    select 'quickbooks:' || qb.contact_id, null, null, qb.contact_id, qb.remote_id, 'quickbooks', null, null,
           false, true, null, qb.contact_name, null, qb.email, null, qb.phone_digits
    from qb
    where qb.is_customer and not qb.is_deleted
      and qb.contact_id not in (select contact_id from known_quickbooks_ids where contact_id is not null)
),
all_rows as (
    select * from paired
    union all
    select * from only_cq
    union all
    select * from only_qb
),
compared as (
    select
        *,
        -- QuickBooks display names must be unique, so a target may suffix them ("Jane Smith (1207)"): a prefix matches
        in_coperniq and in_quickbooks and coperniq_name is not null and (quickbooks_name is null or not starts_with(
            lower(regexp_replace(quickbooks_name, '\s+', ' ', 'g')), lower(regexp_replace(coperniq_name, '\s+', ' ', 'g'))))
            as is_name_mismatch,
        -- the sync fills in and never blanks out: a value only in QuickBooks is fine, one only in Coperniq is not
        in_coperniq and in_quickbooks and coperniq_email is not null and coperniq_email is distinct from quickbooks_email
            as is_email_mismatch,
        in_coperniq and in_quickbooks and coperniq_phone is not null
            and right(coperniq_phone, 10) is distinct from right(quickbooks_phone, 10) as is_phone_mismatch
    from all_rows
)
select
    reconciliation_key,
    coperniq_type,
    coperniq_id,
    quickbooks_contact_id,
    quickbooks_remote_id,
    origin,
    link_status,
    linked_at,
    coperniq_name,
    quickbooks_name,
    coperniq_email,
    quickbooks_email,
    coperniq_phone,
    quickbooks_phone,
    is_name_mismatch,
    is_email_mismatch,
    is_phone_mismatch,
    {{ reconciliation_columns([('name', 'is_name_mismatch'), ('email', 'is_email_mismatch'), ('phone', 'is_phone_mismatch')]) }}
from compared
