-- Every invoice of either side, paired through the sync ledger's id map, with amount, tax, balance, status and void
-- state per side and what disagrees. reconciliation_status:
--   matched | mismatched        linked, both present (mismatch_reasons says what differs, mismatch_details in words)
--   explained                   linked, both present, different on purpose (void_policy zero_and_note or leave):
--                               explained_difference says why; not a problem
--   missing_in_quickbooks       linked, but the QuickBooks invoice is gone (deleted in QBO or never landed)
--   missing_in_coperniq         linked, but the Coperniq invoice is gone
--   unlinked_link               the ledger marks the link deleted (or voided with one side gone): kept for audit
--   only_in_coperniq | only_in_quickbooks   no link (not synced, e.g. invoice_sync off or project before trigger)
-- All money is DECIMAL(18,2) (no float): Coperniq's amount is before tax, so amount, balance and paid status are
-- compared net of QuickBooks' tax (a Coperniq invoice paid in full is paid in QuickBooks once all but the tax is) and
-- the tax on its own (Coperniq's rate x amount, where Coperniq gives a rate).
-- Classes / departments: what var('tracking_category_mapping') (the forward target's setting) gives for the invoice's
-- project against the categories on the QuickBooks invoice (macros/tracking.sql).
{%- set rules = tracking_rules() %}
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
projects as (select project_id, project_json from {{ ref('stg_coperniq__projects') }}),
categories as (select * from {{ ref('stg_quickbooks__tracking_categories') }}),
-- every category id on a QuickBooks invoice: on the invoice, and (classes) on its lines
qb_category_ids as (
    select invoice_id, unnest(cast(tracking_categories as varchar[])) as category_id, 'invoice' as place
    from qb where tracking_categories is not null
    union all
    select invoice_id, unnest(cast(line_tracking_categories as varchar[])), 'line'
    from qb where line_tracking_categories is not null
),
qb_tracking as (
    select
        q.invoice_id,
        -- the invoice's classes: on the invoice or on its lines (QuickBooks keeps them in one place or the other,
        -- by its "Track classes" preference); departments only on the invoice
        coalesce(list(distinct {'id': c.category_id, 'remote_id': c.remote_id, 'name': c.category_name,
                                 'full_name': c.full_name}) filter (where c.category_type = 'CLASS'), []) as qb_class_list,
        coalesce(list(distinct {'id': c.category_id, 'remote_id': c.remote_id, 'name': c.category_name,
                                 'full_name': c.full_name}) filter (where c.category_type = 'DEPARTMENT'
                                                                   and q.place = 'invoice'), []) as qb_department_list,
        coalesce(list(distinct q.category_id) filter (where c.category_id is null), []) as unknown_category_ids
    from qb_category_ids q
    left join categories c on c.category_id = q.category_id
    group by q.invoice_id
),
-- The forward target's latest word on each Coperniq invoice (dry-run plans aside): an invoice it left in QuickBooks
-- on purpose (void_policy leave, or matching_strategy skip) was logged skipped "... left unchanged in QuickBooks (...)"
last_forward_log as (
    select source_id, action, reason
    from {{ ref('stg_ledger__sync_log') }}
    where direction = 'forward' and stream = 'invoices' and action <> 'planned' and source_id is not null
    qualify row_number() over (partition by source_id order by logged_at desc nulls last, log_key desc) = 1
),
keys as (
    select 'link:' || coperniq_invoice_id || ':' || quickbooks_invoice_id as reconciliation_key,
           coperniq_invoice_id, quickbooks_invoice_id, origin, link_status, linked_at
    from links
    union all
    select 'coperniq:' || invoice_id, invoice_id, null, 'coperniq', null, null
    from cq where invoice_id not in (select coperniq_invoice_id from links)
    union all
    select 'quickbooks:' || invoice_id, null, invoice_id, 'quickbooks', null, null
    from qb where not is_deleted and invoice_id not in (select quickbooks_invoice_id from links)
),
all_rows as (
    select
        k.*,
        cq.invoice_id is not null as in_coperniq,
        qb.invoice_id is not null and not qb.is_deleted as in_quickbooks,
        cq.invoice_number as coperniq_number, qb.invoice_number as quickbooks_number, qb.remote_id as quickbooks_remote_id,
        cq.account_name as coperniq_account_name, qb.contact_id as quickbooks_contact_id,
        cq.amount as coperniq_amount, qb.total_amount as quickbooks_amount,
        qb.sub_total as quickbooks_sub_total,
        cq.tax_id as coperniq_tax_id, cq.tax_rate as coperniq_tax_rate,
        qb.tax_amount as quickbooks_tax_amount, qb.inclusive_of_tax as quickbooks_inclusive_of_tax,
        cq.balance as coperniq_balance, qb.balance as quickbooks_balance,
        cq.status as coperniq_status, qb.status as quickbooks_status,
        cq.status_raw as coperniq_status_raw, qb.status_raw as quickbooks_status_raw,
        cq.is_archived as coperniq_is_archived,
        -- taken back in Coperniq: declined / voided / archived, or back to draft where the sync voided or zeroed it
        coalesce(cq.is_voided or (cq.status = 'draft' and k.link_status in ('voided', 'zeroed')), false)
            as coperniq_is_voided,
        coalesce(qb.is_void, false) as quickbooks_is_voided,
        -- what Coperniq says, in the target's words ("invoice is DECLINED in Coperniq")
        case when upper(cq.status_raw) in ('DECLINED', 'VOID', 'VOIDED', 'DRAFT') or not cq.is_archived
             then coalesce(upper(cq.status_raw), 'without status') else 'archived' end as coperniq_state_text,
        coalesce(upper(qb.status_raw), 'without status') as quickbooks_state_text,
        l.action = 'skipped' and l.reason like '%left unchanged in QuickBooks (%' as is_left_by_policy,
        coalesce(regexp_extract(l.reason, 'left unchanged in QuickBooks \(([^)]*)\)', 1), 'void_policy: leave')
            as left_by_policy_text,
        -- classes / locations: Merge TrackingCategory ids on the QuickBooks invoice (and its lines), their names
        -- and types from the tracking_categories stream; the Coperniq side is the invoice's project (record)
        qb.tracking_categories as quickbooks_tracking_categories,
        qb.line_tracking_categories as quickbooks_line_tracking_categories,
        coalesce(qt.qb_class_list, []) as qb_class_list,
        coalesce(qt.qb_department_list, []) as qb_department_list,
        coalesce(qt.unknown_category_ids, []) as unknown_category_ids,
        cq.record_id as coperniq_project_id,
        p.project_id is not null as project_landed,
        p.project_json,
        cq.updated_at as coperniq_updated_at, qb.modified_at as quickbooks_modified_at
    from keys k
    left join cq on cq.invoice_id = k.coperniq_invoice_id
    left join qb on qb.invoice_id = k.quickbooks_invoice_id
    left join last_forward_log l on l.source_id = k.coperniq_invoice_id
    left join projects p on p.project_id = cq.record_id
    left join qb_tracking qt on qt.invoice_id = k.quickbooks_invoice_id
),
voids as (
    select
        *,
        case
            when not (in_coperniq and in_quickbooks) then null
            when coperniq_is_voided and quickbooks_is_voided then 'voided_in_both'
            when link_status = 'zeroed' and not coperniq_is_voided then 'zeroed_but_active_in_coperniq'
            when link_status = 'zeroed' and coalesce(quickbooks_amount, 0) <> 0 then 'zeroed_but_not_zero'
            when link_status = 'zeroed' then 'zeroed_by_policy'
            when coperniq_is_voided and link_status = 'active' and is_left_by_policy then 'left_by_policy'
            when coperniq_is_voided then 'voided_in_coperniq_only'
            when quickbooks_is_voided then 'voided_in_quickbooks_only'
            else 'active'
        end as void_state
    from all_rows
),
amounts as (
    select
        *,
        -- money and status are compared only while neither side is voided or zeroed (a void zeroes QuickBooks)
        coalesce(void_state = 'active', false) as is_live_pair,
        -- QuickBooks before tax, the figure Coperniq's amount is (total - tax; total when the tax did not land)
        quickbooks_amount - coalesce(quickbooks_tax_amount, 0.00) as quickbooks_amount_before_tax,
        quickbooks_balance - coalesce(quickbooks_tax_amount, 0.00) as quickbooks_balance_before_tax,
        -- QuickBooks' paid status of the part before tax, what Coperniq's status says (the tax is QuickBooks' own)
        case
            when coalesce(quickbooks_tax_amount, 0.00) = 0.00
                 or quickbooks_status not in ('open', 'partially_paid', 'paid') then quickbooks_status
            when quickbooks_balance - quickbooks_tax_amount <= 0.00 then 'paid'
            when quickbooks_balance < quickbooks_amount then 'partially_paid'
            else 'open'
        end as quickbooks_status_before_tax,
        -- the tax Coperniq implies: its rate of its amount, rounded once to the cent (as QuickBooks taxes a rate)
        cast(round(cast(coperniq_amount as decimal(38, 2)) * coperniq_tax_rate * 0.01, 2) as decimal(18, 2)) as coperniq_tax_amount
    from voids
),
-- the project's values of each rule's field (tracking.field_values: a list field counts each entry, deduplicated)
tracking_field as (
    select
        *,
        {%- for kind in ['class', 'department'] %}
        {%- if kind in rules %}
        {{ tracking_field_values(rules[kind].field, 'project_json') }} as {{ kind }}_values_raw
        {%- else %}
        cast(null as varchar[]) as {{ kind }}_values_raw
        {%- endif %}{{ "," if not loop.last }}
        {%- endfor %}
    from amounts
),
tracking_values as (
    select
        *,
        list_filter(class_values_raw, lambda x, i: list_position(class_values_raw, x) = i) as class_values,
        list_filter(department_values_raw, lambda x, i: list_position(department_values_raw, x) = i) as department_values
    from tracking_field
),
tracking_expected as (
    select
        *,
        {%- for kind in ['class', 'department'] %}
        {%- if kind in rules %}
        {{ tracking_expected(rules[kind], kind) }}
        {%- else %}
        cast(null as varchar) as expected_{{ kind }},
        cast(null as varchar) as {{ kind }}_rule_state
        {%- endif %}{{ "," if not loop.last }}
        {%- endfor %}
    from tracking_values
),
tracking as (
    select
        *,
        {%- for kind in ['class', 'department'] %}
        {{ tracking_names('qb_' ~ kind ~ '_list') }} as quickbooks_{{ kind }},
        case
            when not is_live_pair then null
            {%- if kind not in rules %}
            else 'not_configured'
            {%- else %}
            when origin = 'quickbooks' then 'not_comparable'
            when expected_{{ kind }} is null then 'not_comparable'
            when quickbooks_tracking_categories is null
                {%- if kind == 'class' %}
                 or (len(qb_class_list) = 0 and quickbooks_line_tracking_categories is null)
                {%- endif %} then 'not_comparable'
            when len(qb_{{ kind }}_list) = 0 and len(unknown_category_ids) > 0 then 'not_comparable'
            when len(qb_{{ kind }}_list) = 0 then 'mismatch'
            when list_bool_and(list_transform(qb_{{ kind }}_list, lambda c: {{ tracking_is('c', 'expected_' ~ kind) }}))
                then 'match'
            when {{ has_non_ascii('expected_' ~ kind) }}
                 or list_bool_or(list_transform(qb_{{ kind }}_list, lambda c: {{ has_non_ascii("c.name || c.full_name") }}))
                then 'not_comparable'
            else 'mismatch'
            {%- endif %}
        end as {{ kind }}_comparison,
        -- the field's values as the reasons quote them
        coalesce(nullif(array_to_string(list_transform({{ kind }}_values, lambda v: '''' || v || ''''), ', '), ''),
                 '(no value)') as {{ kind }}_values_text{{ "," if not loop.last }}
        {%- endfor %}
    from tracking_expected
),
compared as (
    select
        *,
        coperniq_amount + coperniq_tax_amount as coperniq_total,
        coperniq_amount - quickbooks_amount_before_tax as amount_diff,
        coperniq_balance - quickbooks_balance_before_tax as balance_diff,
        coperniq_tax_amount - quickbooks_tax_amount as tax_diff,
        coperniq_amount + coperniq_tax_amount - quickbooks_amount as total_diff,
        case
            when not is_live_pair then null
            when coperniq_tax_rate is null or quickbooks_tax_amount is null
                 or coalesce(quickbooks_inclusive_of_tax, false) then 'not_comparable'
            when {{ amounts_differ('coperniq_tax_amount', 'quickbooks_tax_amount') }} then 'mismatch'
            else 'match'
        end as tax_comparison,
        is_live_pair and {{ amounts_differ('coperniq_amount', 'quickbooks_amount_before_tax') }} as is_amount_mismatch,
        is_live_pair and {{ amounts_differ('coperniq_balance', 'quickbooks_balance_before_tax') }} as is_balance_mismatch,
        -- QuickBooks has no real draft: an invoice pushed "as draft" may read open there, so draft~open is no mismatch
        is_live_pair and coalesce(coperniq_status, '') <> coalesce(quickbooks_status_before_tax, '')
            and not (coperniq_status in ('draft', 'open') and quickbooks_status_before_tax in ('draft', 'open'))
            as is_status_mismatch,
        coalesce(void_state = 'voided_in_coperniq_only', false) as is_voided_in_coperniq_only,
        coalesce(void_state = 'voided_in_quickbooks_only', false) as is_voided_in_quickbooks_only,
        coalesce(void_state in ('zeroed_but_active_in_coperniq', 'zeroed_but_not_zero'), false) as is_zeroed_link_mismatch,
        coalesce(void_state in ('zeroed_by_policy', 'left_by_policy'), false) as is_explained_difference
    from tracking
),
flagged as (
    select
        *,
        coalesce(tax_comparison = 'mismatch', false) as is_tax_mismatch,
        coalesce(class_comparison = 'mismatch', false) as is_class_mismatch,
        coalesce(department_comparison = 'mismatch', false) as is_department_mismatch
    from compared
),
statused as (
    select
        *,
        {{ reconciliation_columns(
            [('amount', 'is_amount_mismatch'), ('balance', 'is_balance_mismatch'), ('status', 'is_status_mismatch'),
             ('tax', 'is_tax_mismatch'), ('class', 'is_class_mismatch'), ('department', 'is_department_mismatch'),
             ('voided_in_coperniq_only', 'is_voided_in_coperniq_only'),
             ('voided_in_quickbooks_only', 'is_voided_in_quickbooks_only'), ('zeroed_link', 'is_zeroed_link_mismatch')],
            unlinked="(link_status = 'deleted' or (link_status = 'voided' and not (in_coperniq and in_quickbooks)))",
            explained='is_explained_difference') }}
    from flagged
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
    quickbooks_sub_total,
    quickbooks_amount_before_tax,
    amount_diff,
    coperniq_tax_id,
    coperniq_tax_rate,
    coperniq_tax_amount,
    quickbooks_tax_amount,
    tax_diff,
    tax_comparison,
    case
        when tax_comparison <> 'not_comparable' then null
        when coalesce(quickbooks_inclusive_of_tax, false)
            then 'the QuickBooks invoice is tax-inclusive (its amounts hold the tax): Coperniq''s rate applies on top, '
                 || 'so the two are not comparable'
        when quickbooks_tax_amount is null
            then 'QuickBooks'' tax total (Merge total_tax_amount) did not land in the warehouse: it cannot be checked'
        else 'Coperniq gives no tax rate for this invoice (untaxed, or its API has no tax fields), so QuickBooks'' tax of '
             || cast(quickbooks_tax_amount as varchar) || ' (default_tax_code, or automated sales tax) cannot be checked'
    end as tax_comparison_note,
    coperniq_total,
    total_diff,
    coperniq_balance,
    quickbooks_balance,
    quickbooks_balance_before_tax,
    balance_diff,
    coperniq_status,
    quickbooks_status,
    coperniq_status_raw,
    quickbooks_status_raw,
    coperniq_is_archived,
    coperniq_is_voided,
    quickbooks_is_voided,
    void_state,
    quickbooks_tracking_categories,
    -- what tracking_category_mapping expects, as a JSON object {"class": name, "department": name} (NULL unset)
    case when expected_class is not null or expected_department is not null
        then json_object('class', expected_class, 'department', expected_department) end as coperniq_tracking_categories,
    coperniq_project_id,
    expected_class,
    expected_department,
    quickbooks_class,
    quickbooks_department,
    class_comparison,
    department_comparison,
    nullif(concat_ws('; ',
        {%- for kind in ['class', 'department'] %}
        {%- set rule = rules.get(kind) %}
        case when {{ kind }}_comparison = 'not_comparable' then '{{ kind }}: ' || case
            when origin = 'quickbooks'
                then 'born in QuickBooks: tracking_category_mapping decides the {{ kind }} only of invoices the forward sync pushes'
            {%- if rule %}
            {%- set where = 'tracking_category_mapping.' ~ rule.key %}
            {%- set field = rule.field | replace("'", "''") %}
            when {{ kind }}_rule_state = 'no_project'
                then 'the invoice''s project ' || coperniq_project_id || ' is not in the warehouse (tap-coperniq''s projects stream did not land it)'
            when {{ kind }}_rule_state = 'non_ascii'
                then 'no {{ where }}.values entry matched {{ field }} ' || {{ kind }}_values_text
                     || ' here, and SQL folds non-ASCII text differently from the target (NFKC, casefold): not judged'
            when {{ kind }}_rule_state = 'unmapped'
                then '{{ field }} ' || {{ kind }}_values_text || ' has no entry in {{ where }}.values and there is no default '
                     || '(the forward target fails such an invoice rather than push it without its {{ kind }})'
            when {{ kind }}_rule_state = 'several'
                then '{{ field }} has several values (' || {{ kind }}_values_text || ') and {{ where }} has no values to pick '
                     || 'one (the forward target fails such an invoice)'
            when {{ kind }}_rule_state = 'empty'
                then '{{ field }} is empty and {{ where }} has no default (the forward target fails such an invoice)'
            {%- endif %}
            when quickbooks_tracking_categories is null or len(qb_{{ kind }}_list) = 0 and len(unknown_category_ids) = 0
                then 'QuickBooks'' tracking categories (Merge tracking_categories of the invoice{{ " and its lines" if kind == "class" }}) did not land'
            when len(qb_{{ kind }}_list) = 0
                then 'QuickBooks category id(s) ' || array_to_string(list_sort(unknown_category_ids), ', ')
                     || ' are not in the tracking_categories stream, so their type and name are unknown'
            else 'QuickBooks shows ' || coalesce(quickbooks_{{ kind }}, '?') || ', tracking_category_mapping gives '
                 || coalesce(expected_{{ kind }}, '?') || ': non-ASCII names, which SQL folds differently from the target'
        end end{{ "," if not loop.last }}
        {%- endfor %}
    ), '') as tracking_comparison_note,
    is_amount_mismatch,
    is_balance_mismatch,
    is_status_mismatch,
    is_tax_mismatch,
    is_class_mismatch,
    is_department_mismatch,
    is_voided_in_coperniq_only,
    is_voided_in_quickbooks_only,
    is_zeroed_link_mismatch,
    reconciliation_status,
    mismatch_reasons,
    -- every mismatch in words, in mismatch_reasons' order
    case when reconciliation_status in ('mismatched', 'missing_in_quickbooks', 'missing_in_coperniq') then nullif(concat_ws('; ',
        case when reconciliation_status = 'missing_in_quickbooks'
            then 'linked in the ledger, but the QuickBooks invoice was deleted there or did not land' end,
        case when reconciliation_status = 'missing_in_coperniq'
            then 'linked in the ledger, but the Coperniq invoice is gone' end,
        case when is_amount_mismatch then 'amount: ' || coalesce(cast(coperniq_amount as varchar), 'none')
            || ' in Coperniq, ' || coalesce(cast(quickbooks_amount_before_tax as varchar), 'none')
            || ' in QuickBooks before tax (difference ' || coalesce(cast(amount_diff as varchar), '?') || ')' end,
        case when is_balance_mismatch then 'balance: ' || coalesce(cast(coperniq_balance as varchar), 'none')
            || ' in Coperniq, ' || coalesce(cast(quickbooks_balance_before_tax as varchar), 'none')
            || ' in QuickBooks net of its tax (difference ' || coalesce(cast(balance_diff as varchar), '?') || ')' end,
        case when is_status_mismatch then 'status: ' || coalesce(coperniq_status_raw, 'none') || ' in Coperniq, '
            || coalesce(quickbooks_status_raw, 'none') || ' in QuickBooks' end,
        case when is_tax_mismatch then 'tax: QuickBooks charged ' || cast(quickbooks_tax_amount as varchar)
            || ', Coperniq implies ' || cast(coperniq_tax_amount as varchar) || ' ('
            || rtrim(rtrim(cast(coperniq_tax_rate as varchar), '0'), '.') || '% of ' || cast(coperniq_amount as varchar)
            || '; difference ' || cast(tax_diff as varchar) || ')' end,
        {%- for kind in ['class', 'department'] %}
        {%- if kind in rules %}
        case when is_{{ kind }}_mismatch and len(qb_{{ kind }}_list) = 0
            then '{{ kind }} missing in QuickBooks: tracking_category_mapping gives ''' || expected_{{ kind }} || ''''
                 || case when {{ kind }}_rule_state = 'default' then ' (its default)' else '' end
                 || ' for {{ rules[kind].field | replace("'", "''") }} ' || {{ kind }}_values_text
            when is_{{ kind }}_mismatch
            then '{{ kind }}: QuickBooks shows '
                 || array_to_string(list_transform(list_sort(list_distinct(list_transform(qb_{{ kind }}_list, lambda c: c.full_name))),
                                                   lambda n: '''' || n || ''''), ', ')
                 || ', tracking_category_mapping gives ''' || expected_{{ kind }} || ''''
                 || case when {{ kind }}_rule_state = 'default' then ' (its default)' else '' end
                 || ' for {{ rules[kind].field | replace("'", "''") }} ' || {{ kind }}_values_text end,
        {%- endif %}
        {%- endfor %}
        case when is_voided_in_coperniq_only and link_status = 'voided'
            then 'invoice is ' || coperniq_state_text || ' in Coperniq and the sync voided it (ledger link voided), '
                 || 'but Merge still shows it ' || quickbooks_state_text || ': Merge shows a void after its next sync; '
                 || 'if it stays, check the invoice in QuickBooks'
            when is_voided_in_coperniq_only
            then 'invoice is ' || coperniq_state_text || ' in Coperniq but ' || quickbooks_state_text
                 || ' in QuickBooks: not voided there (see its sync_log rows and sync_failing_rows)' end,
        case when is_voided_in_quickbooks_only and link_status = 'voided'
            then 'voided in QuickBooks by the sync, but ' || coperniq_state_text || ' in Coperniq again: the next '
                 || 'sync creates it anew under a suffixed number (QuickBooks cannot un-void)'
            when is_voided_in_quickbooks_only
            then 'VOID in QuickBooks but ' || coperniq_state_text || ' (active) in Coperniq: voided in QuickBooks by '
                 || 'hand? Decline it in Coperniq, or enter it again in QuickBooks (QuickBooks cannot un-void)' end,
        case when void_state = 'zeroed_but_active_in_coperniq'
            then 'zeroed in QuickBooks by void_policy zero_and_note, but ' || coperniq_state_text
                 || ' in Coperniq again: the next sync gives it its lines back' end,
        case when void_state = 'zeroed_but_not_zero'
            then 'zeroed in QuickBooks by void_policy zero_and_note (invoice is ' || coperniq_state_text
                 || ' in Coperniq), but QuickBooks shows a total of ' || cast(quickbooks_amount as varchar)
                 || ': changed there after the sync zeroed it' end
        ), '') end as mismatch_details,
    case
        when reconciliation_status <> 'explained' then null
        when void_state = 'zeroed_by_policy'
            then 'zeroed by void_policy zero_and_note: invoice is ' || coperniq_state_text
                 || ' in Coperniq; QuickBooks keeps it at 0.00 with a note in its memo'
        when void_state = 'left_by_policy'
            then 'invoice is ' || coperniq_state_text || ' in Coperniq, left ' || quickbooks_state_text
                 || ' in QuickBooks by the sync (' || left_by_policy_text || '): review it there'
    end as explained_difference,
    coperniq_updated_at,
    quickbooks_modified_at
from statused
