{#
  Attach the sync ledger (a separate DuckDB file written by the targets) as database `ledger`, READ_ONLY.
  Why read-only and only here: the targets hold DuckDB's write lock on the ledger while they run, and dbt must never
  write to it. Run dbt when no target runs; otherwise DuckDB refuses the attach ("Could not set lock on file").
  When the ledger file does not exist yet (no sync has run), an empty in-memory `ledger` with the contract's tables
  stands in, so the reconciliation still builds (every pair then shows as unlinked).
#}
{% macro attach_ledger() %}
  {%- if execute -%}
    {%- set path = var('ledger_path') -%}
    {%- set attached = run_query("select count(*) from duckdb_databases() where database_name = 'ledger'").columns[0].values()[0] -%}
    {%- if attached == 0 -%}
      {%- set exists = run_query("select count(*) from glob('" ~ path | replace("'", "''") ~ "')").columns[0].values()[0] -%}
      {%- if exists > 0 -%}
        {{ log("attaching sync ledger " ~ path ~ " (read-only)", info=true) }}
        {%- do run_query("attach '" ~ path | replace("'", "''") ~ "' as ledger (read_only)") -%}
      {%- else -%}
        {{ log("sync ledger " ~ path ~ " not found: using an empty ledger", info=true) }}
        {%- do run_query("attach ':memory:' as ledger") -%}
        {%- do run_query(empty_ledger_ddl()) -%}
      {%- endif -%}
    {%- endif -%}
  {%- endif -%}
  select 1
{% endmacro %}

{# The ledger tables as docs/CONTRACTS.md defines them (only the columns the models read). #}
{% macro empty_ledger_ddl() %}
create table if not exists ledger.main.id_map (
    source_system varchar, source_type varchar, source_id varchar, target_system varchar, target_type varchar,
    target_id varchar, target_remote_id varchar, fingerprint varchar, origin varchar, status varchar,
    updated_at timestamp);
create table if not exists ledger.main.sync_log (
    run_id varchar, logged_at timestamp, direction varchar, stream varchar, source_id varchar, action varchar,
    reason varchar, target_id varchar, request_id varchar);
create table if not exists ledger.main.runs (
    run_id varchar, direction varchar, started_at timestamp, finished_at timestamp, dry_run boolean,
    counts_json varchar, status varchar);
create table if not exists ledger.main.staging (
    source_system varchar, stream varchar, record_id varchar, payload_json varchar, received_at timestamp,
    status varchar, attempts integer, last_error varchar);
{% endmacro %}
