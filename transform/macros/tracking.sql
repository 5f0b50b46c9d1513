{#
  QuickBooks Classes and Departments (Locations) the forward target's `tracking_category_mapping` expects, the same
  rules as target-quickbooks-merge's tracking.py / tracking_settings.py as far as SQL can (transform/README.md,
  "Invoices: classes and locations"). The mapping arrives as var('tracking_category_mapping'): a mapping, or its JSON
  text (reconcile.py passes the target's setting through the env var RECONCILE_TRACKING_CATEGORY_MAPPING).
#}

{# The setting's rules by kind ('class', 'department'; `location` is department), each {key, field, values, default}. #}
{% macro tracking_rules() %}
  {%- set raw = var('tracking_category_mapping', {}) -%}
  {%- if raw is string -%}
    {%- set raw = fromjson(raw) if raw | trim else {} -%}
  {%- endif -%}
  {%- set kinds = {'class': 'class', 'department': 'department', 'location': 'department'} -%}
  {%- set rules = {} -%}
  {%- if raw is mapping -%}
    {%- for key, spec in raw.items() -%}
      {%- set k = key | string | trim | lower -%}
      {%- if k in kinds and spec is mapping and spec.get('field') is string and spec.get('field') | trim -%}
        {%- set pairs = [] -%}
        {%- if spec.get('values') is mapping -%}
          {%- for source, name in spec.get('values').items() -%}
            {%- do pairs.append([source | string | trim, name | string | trim]) -%}
          {%- endfor -%}
        {%- endif -%}
        {%- do rules.update({kinds[k]: {
            'key': k,
            'field': spec.get('field') | trim,
            'values': pairs if spec.get('values') is mapping else none,
            'default': (spec.get('default') | string | trim) if spec.get('default') is not none else none}}) -%}
      {%- endif -%}
    {%- endfor -%}
  {%- endif -%}
  {{ return(rules) }}
{% endmacro %}

{# A SQL string literal. #}
{% macro sql_literal(text) -%}
  {%- if text is none -%}cast(null as varchar){%- else -%}'{{ text | string | replace("'", "''") }}'{%- endif -%}
{%- endmacro %}

{#
  sync_ledger.normalize_name in SQL: lower case, punctuation -> space, spaces collapsed. Python also applies NFKC and
  casefold (ß -> ss); SQL has NFC and lower only, so the two agree on ASCII text (non-ASCII: see has_non_ascii).
#}
{% macro norm_name(expr) -%}
  trim(regexp_replace(regexp_replace(lower(nfc_normalize({{ expr }})), '[^\p{L}\p{N}_\s]', ' ', 'g'), '\s+', ' ', 'g'))
{%- endmacro %}

{% macro has_non_ascii(expr) -%}
  coalesce(regexp_matches({{ expr }}, '[^\x00-\x7F]'), false)
{%- endmacro %}

{#
  tracking.field_values in SQL: the non-empty scalar values of the rule's (dotted) field of the project's landed row,
  a list field (trades) as its items. The first segment is a column, which the loader lower-cased; the rest are keys
  inside it (a JSON object keeps their case).
#}
{% macro tracking_field_values(field, json_expr) -%}
  {%- set parts = field.split('.') -%}
  {%- set ns = namespace(path='$') -%}
  {%- for part in parts -%}
    {%- set ns.path = ns.path ~ '."' ~ ((part | lower) if loop.first else part) | replace('"', '\\"') ~ '"' -%}
  {%- endfor -%}
  {%- set v = "json_extract(" ~ json_expr ~ ", " ~ sql_literal(ns.path) ~ ")" -%}
  list_filter(list_transform(
      case when json_type({{ v }}) = 'ARRAY' then cast({{ v }} as json[])
           when {{ v }} is null or json_type({{ v }}) in ('OBJECT', 'NULL') then cast([] as json[])
           else [{{ v }}] end,
      lambda e: case when json_type(e) not in ('OBJECT', 'ARRAY', 'NULL') then nullif(trim(json_extract_string(e, '$')), '') end),
    lambda e: e is not null)
{%- endmacro %}

{#
  expected_<kind> (the QuickBooks name the rule gives, NULL when it gives none) and <kind>_rule_state: values |
  default | value (where the name came from), or why there is none: no_project | non_ascii | unmapped | several |
  empty (NULL without a Coperniq invoice). Needs <kind>_values (deduplicated field values), in_coperniq,
  coperniq_project_id and project_landed.
#}
{% macro tracking_expected(rule, kind) -%}
  {%- set vals = kind ~ '_values' -%}
  {%- set default = sql_literal(rule.default) -%}
  {%- if rule['values'] is not none -%}
    {%- set names = [] -%}
    {%- set entries = [] -%}
    {%- for source, name in rule['values'] -%}
      {%- if name not in names -%}{%- do names.append(name) -%}{%- endif -%}
      {%- do entries.append("{'s': " ~ sql_literal(source) ~ ", 'p': " ~ (names.index(name) + 1) ~ "}") -%}
    {%- endfor -%}
    {%- set names_sql -%}[{% for n in names %}{{ sql_literal(n) }}{{ ", " if not loop.last }}{% endfor %}]::varchar[]{%- endset -%}
    {%- set hit -%}
      list_min(list_transform(list_filter([{{ entries | join(', ') }}],
          lambda e: list_contains(list_transform({{ vals }}, lambda v: {{ norm_name('v') }}), {{ norm_name('e.s') }})),
        lambda e: e.p))
    {%- endset -%}
    {%- set sources_non_ascii = has_non_ascii(sql_literal(rule['values'] | map('first') | join(' '))) -%}
    case when not in_coperniq then null
         when coperniq_project_id is not null and not project_landed then null
         when {{ hit }} is not null then list_extract({{ names_sql }}, {{ hit }})
         when {{ sources_non_ascii }} or list_bool_or(list_transform({{ vals }}, lambda v: {{ has_non_ascii('v') }})) then null
         else {{ default }} end as expected_{{ kind }},
    case when not in_coperniq then null
         when coperniq_project_id is not null and not project_landed then 'no_project'
         when {{ hit }} is not null then 'values'
         when {{ sources_non_ascii }} or list_bool_or(list_transform({{ vals }}, lambda v: {{ has_non_ascii('v') }})) then 'non_ascii'
         when {{ default }} is not null then 'default'
         else 'unmapped' end as {{ kind }}_rule_state
  {%- else -%}
    case when not in_coperniq then null
         when coperniq_project_id is not null and not project_landed then null
         when len({{ vals }}) = 1 then {{ vals }}[1]
         else {{ default }} end as expected_{{ kind }},
    case when not in_coperniq then null
         when coperniq_project_id is not null and not project_landed then 'no_project'
         when len({{ vals }}) = 1 then 'value'
         when {{ default }} is not null then 'default'
         when len({{ vals }}) > 1 then 'several'
         else 'empty' end as {{ kind }}_rule_state
  {%- endif -%}
{%- endmacro %}

{# The categories of a QuickBooks list (structs id, remote_id, name, full_name) as shown: full names, sorted. #}
{% macro tracking_names(list_expr) -%}
  nullif(array_to_string(list_sort(list_distinct(list_transform({{ list_expr }}, lambda c: c.full_name))), ', '), '')
{%- endmacro %}

{# True when a QuickBooks category (struct) is the name `expected` (tracking.find: a Merge id, a QuickBooks Id, a
   name or a full name, normalized). #}
{% macro tracking_is(category, expected) -%}
  ({{ category }}.id = {{ expected }} or {{ category }}.remote_id = {{ expected }}
   or {{ norm_name(category ~ '.name') }} = {{ norm_name(expected) }}
   or {{ norm_name(category ~ '.full_name') }} = {{ norm_name(expected) }})
{%- endmacro %}
