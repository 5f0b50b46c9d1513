-- Counts per entity and reconciliation status (what `make reconcile` prints), problems first, with the records of
-- each status broken down by mismatch kind (a record with two kinds counts in both) and by explained difference.
with rows as (
    select
        'customer' as entity, reconciliation_status,
        false as is_tax_mismatch, false as is_tax_not_comparable, false as is_voided_in_coperniq_only,
        false as is_voided_in_quickbooks_only, false as is_zeroed_link_mismatch, false as is_zeroed_by_policy,
        false as is_left_by_policy, false as is_voided_in_both, false as is_class_mismatch,
        false as is_department_mismatch, false as is_tracking_not_comparable
    from {{ ref('reconciliation_customers') }}
    union all
    select
        'invoice', reconciliation_status,
        is_tax_mismatch, coalesce(tax_comparison = 'not_comparable', false), is_voided_in_coperniq_only,
        is_voided_in_quickbooks_only, is_zeroed_link_mismatch, coalesce(void_state = 'zeroed_by_policy', false),
        coalesce(void_state = 'left_by_policy', false), coalesce(void_state = 'voided_in_both', false),
        is_class_mismatch, is_department_mismatch,
        coalesce(class_comparison = 'not_comparable' or department_comparison = 'not_comparable', false)
    from {{ ref('reconciliation_invoices') }}
)
select
    entity,
    reconciliation_status,
    count(*) as records,
    reconciliation_status in ('mismatched', 'missing_in_quickbooks', 'missing_in_coperniq') as is_problem,
    -- mismatch kinds (invoices): mismatch_reasons tax, voided_in_coperniq_only, voided_in_quickbooks_only, zeroed_link
    count(*) filter (where is_tax_mismatch) as tax_mismatches,
    count(*) filter (where is_voided_in_coperniq_only) as voided_in_coperniq_only,
    count(*) filter (where is_voided_in_quickbooks_only) as voided_in_quickbooks_only,
    count(*) filter (where is_zeroed_link_mismatch) as zeroed_link_mismatches,
    -- mismatch_reasons class / department (tracking_category_mapping against the QuickBooks invoice)
    count(*) filter (where is_class_mismatch) as class_mismatches,
    count(*) filter (where is_department_mismatch) as department_mismatches,
    -- not problems: explained differences, agreement on a void, and taxes that cannot be checked
    count(*) filter (where is_zeroed_by_policy) as zeroed_by_policy,
    count(*) filter (where is_left_by_policy) as left_by_policy,
    count(*) filter (where is_voided_in_both) as voided_in_both,
    count(*) filter (where is_tax_not_comparable) as tax_not_comparable,
    -- pairs whose class or department could not be checked (tracking_comparison_note says why)
    count(*) filter (where is_tracking_not_comparable) as tracking_not_comparable
from rows
group by entity, reconciliation_status
