{#
  reconciliation_status and mismatch_reasons of one reconciled pair, the same rules in every reconciliation mart.
  Needs link_status, in_quickbooks and in_coperniq; `checks` = [(reason, boolean column), ...] in report order.
#}
{% macro reconciliation_columns(checks) -%}
    case
        when link_status is null and not in_quickbooks then 'only_in_coperniq'
        when link_status is null and not in_coperniq then 'only_in_quickbooks'
        when link_status in ('deleted', 'voided') then 'unlinked_link'
        when not in_quickbooks then 'missing_in_quickbooks'
        when not in_coperniq then 'missing_in_coperniq'
        when {% for _, column in checks %}{{ column }}{% if not loop.last %} or {% endif %}{% endfor %} then 'mismatched'
        else 'matched'
    end as reconciliation_status,
    nullif(concat_ws(', ',
        case when link_status is not null and link_status not in ('deleted', 'voided') and not in_quickbooks then 'missing_in_quickbooks' end,
        case when link_status is not null and link_status not in ('deleted', 'voided') and not in_coperniq then 'missing_in_coperniq' end
        {%- for reason, column in checks %},
        case when {{ column }} then '{{ reason }}' end
        {%- endfor %}), '') as mismatch_reasons
{%- endmacro %}
