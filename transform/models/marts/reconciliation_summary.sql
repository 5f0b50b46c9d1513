-- Counts per entity and reconciliation status (what `make reconcile` prints), problems first.
select
    entity,
    reconciliation_status,
    count(*) as records,
    reconciliation_status in ('mismatched', 'missing_in_quickbooks', 'missing_in_coperniq') as is_problem
from (
    select 'customer' as entity, reconciliation_status from {{ ref('reconciliation_customers') }}
    union all
    select 'invoice', reconciliation_status from {{ ref('reconciliation_invoices') }}
)
group by all
