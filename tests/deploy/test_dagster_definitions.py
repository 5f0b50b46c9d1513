"""The Dagster code location as `dagster` loads it: a partition per company of the file, per-partition lane tags
for the run queue, meltano.yml's schedules (one run per company), the instance's one-run-per-lane limit, and a
companies file that names a missing secret failing with the company and the variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from coperniq_qbo_dagster.companies import CompaniesError, Company, load_companies

ROOT = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")

PROBE = """
import json
from coperniq_qbo_dagster.definitions import defs
from coperniq_qbo_dagster.definitions import LANE_TAG, forward_job, reverse_job
from datetime import datetime, timezone
from dagster import build_schedule_context
tick = datetime(2026, 12, 2, 1, 15, tzinfo=timezone.utc)
out = {"jobs": sorted(j.name for j in defs.jobs), "keys": forward_job.partitions_def.get_partition_keys()}
out["lanes"] = [forward_job.partitioned_config.get_tags_for_partition_key(k)[LANE_TAG] for k in out["keys"]]
out["lanes"] += [reverse_job.partitioned_config.get_tags_for_partition_key(k)[LANE_TAG] for k in out["keys"]]
out["schedules"] = {}
for s in defs.schedules:
    context = build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def())
    requests = s.evaluate_tick(context).run_requests
    assert len({r.run_key for r in requests}) == len(requests)
    out["schedules"][s.name] = [s.cron_schedule, s.job_name, sorted(r.partition_key for r in requests)]
print(json.dumps(out))
"""


def _companies(tmp_path: Path, *keys: str) -> Path:
    path = tmp_path / "companies.yml"
    path.write_text(yaml.safe_dump({"companies": [{"key": k, "env": {"TAP_COPERNIQ_API_KEY": "${K}"}} for k in keys]}))
    return path


def test_the_code_location_loads_a_partition_per_company_and_meltano_schedules(tmp_path: Path) -> None:
    env = {**os.environ, "COPERNIQ_QBO_COMPANIES": str(_companies(tmp_path, "acme-solar", "globex")), "K": "x"}
    probe = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=False)
    assert probe.returncode == 0, probe.stderr[-3000:]
    got = json.loads(probe.stdout.strip().splitlines()[-1])
    assert got["jobs"] == ["forward_job", "reverse_job", "sync_all_companies"]
    assert got["keys"] == ["acme-solar", "globex"]
    assert got["lanes"] == ["acme-solar/forward", "globex/forward", "acme-solar/reverse", "globex/reverse"]
    schedules = yaml.safe_load((ROOT / "meltano.yml").read_text())["schedules"]
    assert got["schedules"] == {
        s["name"].replace("-", "_"): [
            s["interval"],
            "forward_job" if s["job"] == "coperniq-to-quickbooks" else "reverse_job",
            ["acme-solar", "globex"],
        ]
        for s in schedules
    }
    validate = subprocess.run(
        [str(DAGSTER), "definitions", "validate", "-m", "coperniq_qbo_dagster.definitions"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert validate.returncode == 0, validate.stderr[-3000:]


def test_the_instance_admits_one_run_per_company_and_leg() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())["run_coordinator"]
    assert config["class"] == "QueuedRunCoordinator"
    [limit] = config["config"]["tag_concurrency_limits"]
    assert limit == {"key": "coperniq_qbo/lane", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}


def test_companies_file_errors_name_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(CompaniesError, match="No companies file"):
        load_companies(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"companies": [{"key": "a b"}]}))
    with pytest.raises(CompaniesError, match="'a b'"):
        load_companies(bad)
    bad.write_text(yaml.safe_dump({"companies": [{"key": "a"}, {"key": "a"}]}))
    with pytest.raises(CompaniesError, match="twice"):
        load_companies(bad)
    company = Company("acme", {"TARGET_QUICKBOOKS_MERGE_ACCOUNT_TOKEN": "${ACME_TOKEN}", "PLAIN": "v"})
    with pytest.raises(CompaniesError, match=r"acme.*ACME_TOKEN"):
        company.resolved_env({})
    assert company.resolved_env({"ACME_TOKEN": "t"}) == {
        "TARGET_QUICKBOOKS_MERGE_ACCOUNT_TOKEN": "t",
        "PLAIN": "v",
        "SYNC_COMPANY": "acme",
    }
