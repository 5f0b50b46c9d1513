{# Dollars as DECIMAL(18,2): the taps land numbers as DOUBLE; compare money on cents. #}
{% macro money(expr) -%}
    cast(round(cast({{ expr }} as double), 2) as decimal(18, 2))
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
        when 'DECLINED' then 'void'
        else case when {{ expr }} is null then null else 'other' end
    end)
{%- endmacro %}
