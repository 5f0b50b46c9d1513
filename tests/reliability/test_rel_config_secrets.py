"""Invalid config values fail fast (non-zero exit, the setting named, no API call made); known secrets never
appear in stdout, stderr, a DEBUG log file or the ledger's integration log of any of the four plugins."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from rel_helpers import BIN, write_json

from sandbox._server import SandboxServer
from sandbox.coperniq import CoperniqApp
from sandbox.merge import MergeApp
from sync_ledger import Ledger

URL = "http://127.0.0.1:9/v1"  # nothing listens there: a plugin that calls out instead of failing fast errors late

BASE: dict[str, dict[str, Any]] = {
    "tap-coperniq": {"api_key": "k", "api_url": URL},
    "target-quickbooks-merge": {"merge_api_key": "k", "account_token": "t", "base_url": URL},
    "tap-quickbooks-merge": {"merge_api_key": "k", "account_token": "t", "base_url": URL},
    "target-coperniq": {"api_key": "k", "api_url": URL},
}
# (plugin, bad settings, setting name the error must mention)
CASES = [
    ("tap-coperniq", {"api_key": None}, "api_key"),
    ("tap-coperniq", {"page_size": "lots"}, "page_size"),
    ("tap-coperniq", {"max_requests_per_second": "fast"}, "max_requests_per_second"),
    ("target-quickbooks-merge", {"matching_strategy": "merge"}, "matching_strategy"),
    ("target-quickbooks-merge", {"max_requests_per_minute": 0}, "max_requests_per_minute"),
    ("target-quickbooks-merge", {"trigger_phases": [{"workflow": "Residential Solar"}]}, "trigger_phases"),
    ("target-quickbooks-merge", {"job_name_template": "{title} {bogus}"}, "job_name_template"),
    ("target-quickbooks-merge", {"account_token": None}, "account_token"),
    ("tap-quickbooks-merge", {"page_size": "x"}, "page_size"),
    ("tap-quickbooks-merge", {"merge_api_key": None}, "merge_api_key"),
    ("target-coperniq", {"void_policy": "burn"}, "void_policy"),
    ("target-coperniq", {"payment_method": "BITCOIN"}, "payment_method"),
    ("target-coperniq", {"max_attempts": "many"}, "max_attempts"),
]


def test_invalid_config_fails_fast_naming_the_setting(tmp_path: Path) -> None:
    """All cases start at once (processes), then each is checked: exit != 0, setting named, no API call."""
    _check(CASES, tmp_path)


def test_bad_start_date_fails_fast_naming_the_setting(tmp_path: Path) -> None:
    _check(
        [
            ("tap-coperniq", {"start_date": "next tuesday"}, "start_date"),
            ("tap-quickbooks-merge", {"start_date": "2024-13-45 soon"}, "start_date"),
        ],
        tmp_path,
    )


def _check(cases: list[tuple[str, dict[str, Any], str]], tmp_path: Path) -> None:
    procs = []
    for n, (plugin, bad, setting) in enumerate(cases):
        cfg = {**BASE[plugin], **bad}
        cfg = {k: v for k, v in cfg.items() if v is not None}
        cfg["ledger_path"] = str(tmp_path / f"ledger{n}.duckdb") if plugin.startswith("target") else None
        cfg = {k: v for k, v in cfg.items() if v is not None}
        path = write_json(tmp_path / f"c{n}.json", cfg)
        procs.append(
            (
                plugin,
                setting,
                time.monotonic(),
                subprocess.Popen(
                    [str(BIN / plugin), "--config", str(path)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    cwd=tmp_path,
                ),
            )
        )
    problems = []
    for plugin, setting, _started, proc in procs:
        _out, err = proc.communicate(timeout=120)
        if proc.returncode == 0 or setting not in err:
            problems.append(f"{plugin} {setting}: rc={proc.returncode} stderr tail: {err[-600:]!r}")
        if "Connection refused" in err or "ConnectionError" in err:
            problems.append(f"{plugin} {setting}: called the API before validating its config")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------------ secrets
COP_KEY = "cop-SECRET-4f9a1c77e0"
MERGE_KEY = "merge-SECRET-b81d03aa5c"
TOKEN = "acct-SECRET-5e2c9d41f7"
SECRETS = (COP_KEY, MERGE_KEY, TOKEN)
LOG_CONFIG = """version: 1
disable_existing_loggers: false
formatters: {plain: {format: "%(asctime)s %(levelname)s %(name)s %(message)s"}}
handlers: {file: {class: logging.FileHandler, filename: "{path}", formatter: plain, level: DEBUG}}
root: {level: DEBUG, handlers: [file]}
"""


@pytest.fixture
def secret_sandboxes() -> Any:
    cop = SandboxServer(CoperniqApp(api_key=COP_KEY, rate_limit_per_day=None)).start()
    cop.app.seed(projects=10, seed=2)
    merge = SandboxServer(MergeApp(api_key=MERGE_KEY, account_token=TOKEN, rate_limit_per_minute=1_000_000)).start()
    yield cop, merge
    cop.stop()
    merge.stop()


def _run(cmd: list[str], cfg: dict[str, Any], tmp: Path, tag: str, stdin: str = "") -> tuple[int, str]:
    path = write_json(tmp / f"{tag}.json", cfg)
    log_file = tmp / f"{tag}.log"
    (tmp / f"{tag}-log.yml").write_text(LOG_CONFIG.replace("{path}", str(log_file)))
    env = {**os.environ, "LOGLEVEL": "DEBUG", "SINGER_SDK_LOG_CONFIG": str(tmp / f"{tag}-log.yml")}
    proc = subprocess.run(
        [str(BIN / cmd[0]), "--config", str(path), *cmd[1:]],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp,
        check=False,
    )
    text = proc.stdout + "\n" + proc.stderr + "\n" + (log_file.read_text() if log_file.exists() else "")
    return proc.returncode, text


def test_no_secret_in_any_output_debug_logs_or_ledger(secret_sandboxes: Any, tmp_path: Path) -> None:
    cop, merge = secret_sandboxes
    ledger = tmp_path / "ledger.duckdb"
    cop_url, merge_url = f"{cop.root_url}/v1", f"{merge.root_url}/api/accounting/v1"
    tap_c = {
        "api_key": COP_KEY,
        "api_url": cop_url,
        "start_date": "2020-01-01T00:00:00Z",
        "max_requests_per_second": 1000,
    }
    tgt_q = {
        "merge_api_key": MERGE_KEY,
        "account_token": TOKEN,
        "base_url": merge_url,
        "ledger_path": str(ledger),
        "trigger_phases": [{"workflow": "Residential Solar", "phase": "Install"}],
        "backfill": True,
        "invoice_sync": True,
        "default_item": "Services",
        "max_requests_per_minute": 600000,
    }
    tap_q = {
        "merge_api_key": MERGE_KEY,
        "account_token": TOKEN,
        "base_url": merge_url,
        "start_date": "2020-01-01T00:00:00Z",
        "max_requests_per_minute": 600000,
    }
    tgt_c = {"api_key": COP_KEY, "api_url": cop_url, "ledger_path": str(ledger), "max_requests_per_second": 1000}
    outputs: dict[str, str] = {}

    rc, outputs["tap-coperniq"] = _run(["tap-coperniq"], tap_c, tmp_path, "tapc")
    assert rc == 0
    singer = "\n".join(line for line in outputs["tap-coperniq"].splitlines() if line.startswith("{"))
    rc, outputs["target-quickbooks-merge"] = _run(["target-quickbooks-merge"], tgt_q, tmp_path, "tgtq", singer)
    assert rc == 0 and len(merge.app.state.qbo.entities["Customer"]) > 0  # it really talked to Merge
    merge.app.create_payment(next(iter(merge.app.state.table("contacts").order))["id"], 10.0)  # reverse leg input
    rc, outputs["tap-quickbooks-merge"] = _run(["tap-quickbooks-merge"], tap_q, tmp_path, "tapq")
    assert rc == 0
    singer = "\n".join(line for line in outputs["tap-quickbooks-merge"].splitlines() if line.startswith("{"))
    rc, outputs["target-coperniq"] = _run(["target-coperniq"], tgt_c, tmp_path, "tgtc", singer)
    assert rc == 0
    # failure paths print URLs, headers and bodies: wrong credentials, and discovery/about with the real ones
    rc, outputs["tap-coperniq 401"] = _run(["tap-coperniq"], {**tap_c, "api_key": COP_KEY[::-1]}, tmp_path, "e1")
    assert rc != 0
    rc, outputs["target-quickbooks-merge 401"] = _run(
        ["target-quickbooks-merge"], {**tgt_q, "account_token": TOKEN + "x"}, tmp_path, "e2", ""
    )
    assert rc != 0
    rc, outputs["tap-quickbooks-merge 401"] = _run(
        ["tap-quickbooks-merge"], {**tap_q, "merge_api_key": MERGE_KEY + "x"}, tmp_path, "e3"
    )
    assert rc != 0
    for plugin in ("tap-coperniq", "tap-quickbooks-merge"):
        rc, outputs[f"{plugin} --about"] = _run(
            [plugin, "--about", "--format", "json"],
            tap_c if plugin == "tap-coperniq" else tap_q,
            tmp_path,
            f"about-{plugin}",
        )
    assert any("DEBUG" in text for text in outputs.values()), "debug logging was on"
    leaks = [(name, s) for name, text in outputs.items() for s in SECRETS if s in text]
    assert not leaks, f"secrets leaked: {leaks}"
    with Ledger(ledger) as led:
        dump = json.dumps(
            [led.log_rows(limit=100000), [dataclasses.asdict(lk) for lk in led.links()], led.runs(100)], default=str
        )
    assert not [s for s in SECRETS if s in dump]
    assert not [s for s in SECRETS if s in ledger.read_bytes().decode("latin-1")]
