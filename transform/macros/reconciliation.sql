{#
  reconciliation_status and mismatch_reasons of one reconciled pair, the same rules in every reconciliation mart.
  Needs link_status, in_quickbooks and in_coperniq; `checks` = [(reason, boolean column), ...] in report order.
  `unlinked`: when a linked pair is only kept for audit (status unlinked_link, not compared); `explained`: a
  boolean column, true when the pair differs on purpose (status explained, not a problem), or none.
#}
{% macro reconciliation_columns(checks, unlinked="link_status in ('deleted', 'voided')", explained=none) -%}
    case
        when link_status is null and not in_quickbooks then 'only_in_coperniq'
        when link_status is null and not in_coperniq then 'only_in_quickbooks'
        when {{ unlinked }} then 'unlinked_link'
        when not in_quickbooks then 'missing_in_quickbooks'
        when not in_coperniq then 'missing_in_coperniq'
        when {% for _, column in checks %}{{ column }}{% if not loop.last %} or {% endif %}{% endfor %} then 'mismatched'
        {%- if explained %}
        when {{ explained }} then 'explained'
        {%- endif %}
        else 'matched'
    end as reconciliation_status,
    nullif(concat_ws(', ',
        case when link_status is not null and not coalesce({{ unlinked }}, false) and not in_quickbooks then 'missing_in_quickbooks' end,
        case when link_status is not null and not coalesce({{ unlinked }}, false) and not in_coperniq then 'missing_in_coperniq' end
        {%- for reason, column in checks %},
        case when {{ column }} then '{{ reason }}' end
        {%- endfor %}), '') as mismatch_reasons
{%- endmacro %}
