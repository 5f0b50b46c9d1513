{#
  Every row of source(source_name, table_name) as one JSON object (`row_json`, keys = the loader's lower-cased
  column names, nested objects and lists as JSON), or no row when the table did not land. For models that read a
  field named only at run time (tracking_category_mapping's `field`), which source_or_empty's fixed columns cannot.
#}
{% macro source_rows_json(source_name, table_name) %}
  {%- set rel = source(source_name, table_name) -%}
  {%- set existing = none -%}
  {%- if execute -%}
    {%- set existing = adapter.get_relation(database=rel.database, schema=rel.schema, identifier=rel.identifier) -%}
  {%- endif -%}
  {%- if existing is not none -%}
  (select to_json(t) as row_json from {{ rel }} t)
  {%- else -%}
  (select cast(null as json) as row_json where false)
  {%- endif -%}
{% endmacro %}
