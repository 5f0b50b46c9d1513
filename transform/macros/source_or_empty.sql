{#
  A subquery over source(source_name, table_name) with exactly `columns` ({name: duckdb type}).
  Why: target-duckdb creates a table only once a stream has records, and adds columns only as the tap's schema
  grows, so a fresh or one-sided warehouse may lack tables or columns. Missing ones become typed NULLs (and a
  missing table an empty result), so the reconciliation still builds and reports the other side as unmatched.
  Column names are lower case: target-duckdb lower-cases the taps' camelCase properties (amountPaid -> amountpaid).
#}
{% macro source_or_empty(source_name, table_name, columns) %}
  {%- set rel = source(source_name, table_name) -%}
  {%- set existing = none -%}
  {%- set present = [] -%}
  {%- if execute -%}
    {%- set existing = adapter.get_relation(database=rel.database, schema=rel.schema, identifier=rel.identifier) -%}
    {%- if existing is not none -%}
      {%- for col in adapter.get_columns_in_relation(existing) -%}
        {%- do present.append(col.name | lower) -%}
      {%- endfor -%}
    {%- endif -%}
  {%- endif -%}
  (
    select
    {%- for name, type in columns.items() %}
      {% if name in present %}cast({{ adapter.quote(name) }} as {{ type }}){% else %}cast(null as {{ type }}){% endif %} as {{ adapter.quote(name) }}{{ "," if not loop.last }}
    {%- endfor %}
    {% if existing is not none %}from {{ rel }}{% else %}where false{% endif %}
  )
{% endmacro %}
