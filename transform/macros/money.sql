{#
  Dollars as DECIMAL(18,2), exactly. The loaders land the taps' numbers as DOUBLE; a DOUBLE is read through its
  shortest text (10.1 -> '10.1', what sync_ledger.to_money reads too) into DECIMAL and rounded once, half away from
  zero (= to_money's half up for money), so no float arithmetic is ever done on money: 0.1 + 0.2 = 0.30 here.
  Junk (NaN, inf) becomes NULL.
#}
{% macro money(expr) -%}
    cast(round(try_cast(cast({{ expr }} as varchar) as decimal(38, 10)), 2) as decimal(18, 2))
{%- endmacro %}

{# A percentage (8.25 = 8.25 %) as DECIMAL(18,6), exactly (read like money, not rounded to cents). #}
{% macro percent(expr) -%}
    cast(round(try_cast(cast({{ expr }} as varchar) as decimal(38, 10)), 6) as decimal(18, 6))
{%- endmacro %}

{# True when two amounts differ by more than var('amount_tolerance'); NULL-safe (NULL vs value counts as different). #}
{% macro amounts_differ(a, b) -%}
    (case when {{ a }} is null and {{ b }} is null then false
          when {{ a }} is null or {{ b }} is null then true
          else abs({{ a }} - {{ b }}) > {{ var('amount_tolerance') }} end)
{%- endmacro %}

{#
  Invoice status in one vocabulary for both sides: draft | open | partially_paid | paid | void.
  Coperniq: DRAFT SENT OVERDUE PARTIALLY_PAID PAID DECLINED; Merge: DRAFT SUBMITTED AUTHORIZED OPEN PARTIALLY_PAID PAID VOID.
#}
{% macro normalize_invoice_status(expr) -%}
    (case upper(trim({{ expr }}))
        when 'DRAFT' then 'draft'
        when 'SENT' then 'open'
        when 'OVERDUE' then 'open'
        when 'SUBMITTED' then 'open'
        when 'AUTHORIZED' then 'open'
        when 'OPEN' then 'open'
        when 'PARTIALLY_PAID' then 'partially_paid'
        when 'PAID' then 'paid'
        when 'VOID' then 'void'
        when 'VOIDED' then 'void'
        when 'DECLINED' then 'void'
        else case when {{ expr }} is null then null else 'other' end
    end)
{%- endmacro %}
