"""Webhook alerts of scheduled runs (sync_ledger.alerts): real runs of both targets against the sandboxes, a local
Slack-like webhook receiver that records what it is sent. One message when a condition starts, one when it clears,
none in between; a webhook that fails never fails the run and gets the message next run; no secret in any message
or log. The forward runs mostly feed the target crafted Singer lines (a STATE alone is a whole run: pre-flight,
reconcile, finish), so the file stays fast."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.exceptions import ConfigValidationError

from sync_ledger import Ledger
from sync_ledger.alerts import ALERT_KINDS, quota_stopped_streams
from target_coperniq.reconcile import FatalTargetError
from target_coperniq.target import TargetCoperniq
from target_quickbooks_merge.target import TargetError, TargetQuickbooksMerge
from tests.reverse.reverse_helpers import link_forward, merge_contact, merge_invoice, run_target
from tests.target_quickbooks_merge.qbm_helpers import BOTH_TRIGGERS, Pipeline

BIN = Path(sys.executable).parent
HOOK_TOKEN = "XOXB-hook-s3cr3t-token"  # the secret part of a Slack webhook URL's path
COMPANY = "acme-roofing"


class Webhook:
    """A Slack-compatible incoming webhook on 127.0.0.1: records every body; `status` is what it answers."""

    def __init__(self) -> None:
        self.status = 200
        self.attempts: list[str] = []  # every text posted, delivered or not
        self.delivered: list[str] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert set(body) == {"text"} and self.path.endswith(HOOK_TOKEN)
                hook.attempts.append(body["text"])
                if 200 <= hook.status < 300:
                    hook.delivered.append(body["text"])
                self.send_response(hook.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T0/B0/{HOOK_TOKEN}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self) -> list[str]:
        """The texts delivered since the last call."""
        texts, self.delivered = self.delivered, []
        self.attempts = []
        return texts

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.stop()


@pytest.fixture
def forward(coperniq_sandbox: Any, merge_sandbox: Any, tmp_path: Path, webhook: Webhook) -> Pipeline:
    """The forward target on an empty Coperniq and Merge, with alerts on, for company COMPANY."""
    return Pipeline(
        coperniq_sandbox,
        merge_sandbox,
        tmp_path / "ledger.duckdb",
        config={"trigger_phases": BOTH_TRIGGERS, "company": COMPANY, "alert_webhook_url": webhook.url},
    )


def lines(*messages: dict[str, Any]) -> str:
    return "".join(json.dumps(m) + "\n" for m in messages)


def state(bookmarks: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "STATE", "value": {"bookmarks": bookmarks or {"projects": {"replication_key_value": "2025-01-01"}}}}


SCHEMA = {
    "type": "SCHEMA",
    "stream": "projects",
    "key_properties": ["id"],
    "schema": {"type": "object", "properties": {"id": {"type": "integer"}, "title": {"type": ["string", "null"]}}},
}
#: two rows that fail (schema validation, no id), then the tap's STATE
FAILING = lines(
    SCHEMA,
    {"type": "RECORD", "stream": "projects", "record": {"id": 2, "title": 42}},
    {"type": "RECORD", "stream": "projects", "record": {"title": "no id"}},
    state(),
)
QUIET = lines(state())


def kinds(texts: list[str]) -> list[tuple[str, str]]:
    """("ALERT" | "RESOLVED", kind) of each message."""
    out = []
    for text in texts:
        head = text.split(":", 1)[0].split()  # "[coperniq-qbo] ALERT run_failed"
        out.append((head[1], head[2]))
    return sorted(out)


def assert_clean(forward: Pipeline, webhook: Webhook, *texts: str) -> None:
    secrets = [webhook.url, HOOK_TOKEN, forward.merge.api_key, forward.merge.account_token]
    for text in texts:
        for secret in secrets:
            assert secret not in text


def meta_keys(forward: Pipeline) -> dict[str, str]:
    with forward.ledger() as ledger:
        return {
            k: v for k in ALERT_KINDS for leg in ("forward", "reverse") if (v := ledger.get_meta(f"alert:{k}:{leg}"))
        }


# ---------------------------------------------------------------------------------------------------- forward leg
def test_disconnected_alerts_once_over_several_runs_and_resolves_once(
    forward: Pipeline, webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    with forward.ledger() as ledger:
        ledger.set_meta("disconnected", "2026-01-01T00:00:00Z by coperniq-qbo disconnect")
    for _ in range(3):
        with pytest.raises(TargetError, match="disconnected"):
            forward.run(lines=QUIET)
    texts = webhook.take()
    assert kinds(texts) == [("ALERT", "account_disconnected"), ("ALERT", "run_failed")]
    for text in texts:
        assert COMPANY in text and "forward run " in text
    with forward.ledger() as ledger:
        refused = ledger.runs(3)[-1]["run_id"]  # the first of the three refused runs fired
    assert any(f"coperniq-qbo log --run {refused} --failed --company {COMPANY}" in t for t in texts)
    assert any("coperniq-qbo connect" in t for t in texts)

    with forward.ledger() as ledger:
        ledger.set_meta("disconnected", None)  # what `coperniq-qbo connect` does
    forward.run(lines=QUIET)
    forward.run(lines=QUIET)
    resolved = webhook.take()
    assert kinds(resolved) == [("RESOLVED", "account_disconnected"), ("RESOLVED", "run_failed")]
    assert all("coperniq-qbo status --company" in t for t in resolved)
    assert meta_keys(forward) == {}
    assert_clean(forward, webhook, *texts, *resolved, caplog.text)


def test_rejected_account_token_is_account_disconnected(
    forward: Pipeline, webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-account-t0ken"
    with pytest.raises(TargetError, match="coperniq-qbo connect"):
        forward.run(lines=QUIET, account_token=wrong)
    texts = webhook.take()
    assert kinds(texts) == [("ALERT", "account_disconnected"), ("ALERT", "run_failed")]
    assert any("HTTP 401" in t for t in texts)
    assert all(wrong not in t for t in texts) and wrong not in caplog.text
    assert_clean(forward, webhook, *texts, caplog.text)


def test_failed_rows_alert_respects_the_threshold_and_clears(forward: Pipeline, webhook: Webhook) -> None:
    forward.run(lines=FAILING, alert_failed_rows_threshold=3)  # 2 failed rows: under the threshold
    assert webhook.take() == []
    forward.run(lines=FAILING, alert_failed_rows_threshold=2)
    forward.run(lines=FAILING, alert_failed_rows_threshold=2)  # still failing: no second message
    [fired] = webhook.take()
    assert fired.startswith("[coperniq-qbo] ALERT failed_rows:") and "2 row(s) failed (threshold 2)" in fired
    with forward.ledger() as ledger:
        first = ledger.runs(3)[1]["run_id"]
    assert f"`coperniq-qbo log --run {first} --failed --company {COMPANY}`" in fired
    forward.run(lines=QUIET, alert_failed_rows_threshold=2)  # the tap sends nothing invalid: no failed row
    [resolved] = webhook.take()
    assert resolved.startswith("[coperniq-qbo] RESOLVED failed_rows:") and "0 failed row(s)" in resolved
    forward.run(lines=QUIET, alert_failed_rows_threshold=2)
    assert webhook.take() == []


def test_a_failing_webhook_never_fails_the_run_and_the_message_comes_next_run(
    forward: Pipeline, webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.status = 500
    run = forward.run(lines=FAILING)
    assert run.states and run.target.result is not None and run.target.result.failed == 2  # the run went on
    assert [t.split(":")[0] for t in webhook.attempts] == ["[coperniq-qbo] ALERT failed_rows"]
    assert webhook.take() == [] and meta_keys(forward) == {}  # not delivered: no state stored
    assert "did not take the failed_rows alert (HTTP 500)" in caplog.text

    dead = "http://127.0.0.1:9/services/T0/B0/" + HOOK_TOKEN  # nothing listens: a connection error
    forward.run(lines=FAILING, alert_webhook_url=dead)
    assert "did not take the failed_rows alert (ConnectionError)" in caplog.text
    assert meta_keys(forward) == {}

    webhook.status = 200
    forward.run(lines=FAILING)
    assert kinds(webhook.take()) == [("ALERT", "failed_rows")]
    assert set(meta_keys(forward)) == {"failed_rows"}
    assert dead not in caplog.text
    assert_clean(forward, webhook, caplog.text)


def test_coperniq_quota_stop_in_the_tap_state_alerts_until_a_state_without_resume(
    forward: Pipeline, webhook: Webhook
) -> None:
    stopped = {"projects": {"replication_key_value": "2025-01-01", "resume": {"page": 3, "from": "2025-01-01"}}}
    forward.run(lines=lines(state(stopped)))
    [fired] = webhook.take()
    assert fired.startswith("[coperniq-qbo] ALERT coperniq_quota:") and "(projects)" in fired
    partitioned = {"payments": {"partitions": [{"context": {"invoice": 1}, "resume": {"page": 2}}]}}
    forward.run(lines=lines(state(partitioned)))  # still stopped (in a partition): no second message
    assert webhook.take() == []
    forward.run(lines=QUIET)
    assert kinds(webhook.take()) == [("RESOLVED", "coperniq_quota")]


def test_the_tap_stopped_by_its_daily_quota_alerts(forward: Pipeline, webhook: Webhook) -> None:
    """A real tap-coperniq run that its daily quota stops after one call, mid-way through the accounts list."""
    from sandbox.seed import seed_coperniq

    app = forward.coperniq.app
    seed_coperniq(app, projects=12, seed=7)
    if app.assumptions.rate_limit_headers:  # as tests/target_quickbooks_merge/test_qbm_triggers.py spends a "day"
        app.set_rate_limits(None, 1000)
        forward.tap_config = {"daily_call_reserve": 999, "daily_call_limit": 0, "page_size": 5}  # one call
    else:
        forward.tap_config = {"daily_call_reserve": 1, "daily_call_limit": 2, "page_size": 5}  # one call, own count
    run = forward.run()
    assert quota_stopped_streams(run.tap_state)  # the tap really stopped mid-read
    assert [t.split(":")[0] for t in webhook.take()] == ["[coperniq-qbo] ALERT coperniq_quota"]


def test_dry_runs_and_runs_without_a_webhook_send_and_store_nothing(forward: Pipeline, webhook: Webhook) -> None:
    forward.run(lines=FAILING, dry_run=True)
    forward.run(lines=FAILING, alert_webhook_url="")
    assert webhook.take() == [] and webhook.attempts == [] and meta_keys(forward) == {}
    forward.run(lines=FAILING, alert_on=["run_failed"])  # failed_rows not chosen
    assert webhook.take() == [] and meta_keys(forward) == {}


@pytest.mark.parametrize(
    ("override", "setting"),
    [
        ({"alert_on": ["run_failed", "disk_full"]}, "alert_on"),
        ({"alert_failed_rows_threshold": 0}, "alert_failed_rows_threshold"),
        ({"alert_webhook_url": "hooks.slack.com/" + HOOK_TOKEN}, "alert_webhook_url"),
    ],
)
def test_invalid_alert_settings_fail_fast_naming_the_setting(override: dict[str, Any], setting: str) -> None:
    for target, base in (
        (TargetQuickbooksMerge, {"merge_api_key": "k", "account_token": "t"}),
        (TargetCoperniq, {"api_key": "k"}),
    ):
        with pytest.raises(ConfigValidationError) as info:
            target(config={**base, **override})
        text = " ".join(info.value.errors) + str(info.value)
        assert setting in text and HOOK_TOKEN not in text


def test_the_target_process_alerts_and_logs_no_secret(forward: Pipeline, webhook: Webhook, tmp_path: Path) -> None:
    """target-quickbooks-merge as a process (what Meltano runs), refused for a disconnected account: exit 1, the
    alert sent, neither the webhook URL nor a key in its stderr."""
    with forward.ledger() as ledger:
        ledger.set_meta("disconnected", "2026-01-01T00:00:00Z by coperniq-qbo disconnect")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(forward.target_config()))
    proc = subprocess.run(
        [str(BIN / "target-quickbooks-merge"), "--config", str(config)],
        input=QUIET,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1 and "disconnected" in proc.stderr
    assert kinds(webhook.take()) == [("ALERT", "account_disconnected"), ("ALERT", "run_failed")]
    assert_clean(forward, webhook, proc.stdout, proc.stderr)


# ---------------------------------------------------------------------------------------------------- reverse leg
def test_reverse_run_failed_and_failed_rows_alert_once_and_resolve(
    coperniq_sandbox: Any, tmp_path: Path, webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    app = coperniq_sandbox.app
    project = app.add_project("Smith Residence Solar")
    contact = merge_contact("Smith Residence Solar")
    ledger_path = tmp_path / "ledger.duckdb"
    link_forward(ledger_path, "project", project["id"], "job", contact["id"], contact["remote_id"])
    config = {
        "api_url": coperniq_sandbox.url,
        "api_key": coperniq_sandbox.api_key,
        "ledger_path": str(ledger_path),
        "max_requests_per_second": 0,
        "alert_webhook_url": webhook.url,
    }
    invoice = merge_invoice(contact["id"], [{"quantity": 1, "unit_price": 200.0}])
    bad_key = "wrong-coperniq-k3y"
    for _ in range(2):
        with pytest.raises(FatalTargetError):
            run_target({**config, "api_key": bad_key}, [("invoices", [invoice])])
    [failed] = webhook.take()
    assert failed.startswith("[coperniq-qbo] ALERT run_failed:") and "reverse run " in failed
    assert "coperniq-qbo log --run " in failed and bad_key not in failed

    coperniq_sandbox.faults.update(error_rate=1.0, error_status=400, only_paths=["/v1/invoices"])
    run_target(config, [("invoices", [invoice])])  # runs again, with a failed row
    run_target(config, [])  # the row fails again: nothing new
    assert kinds(webhook.take()) == [("ALERT", "failed_rows"), ("RESOLVED", "run_failed")]
    coperniq_sandbox.faults.reset()
    run_target(config, [])  # the row is retried and written
    assert kinds(webhook.take()) == [("RESOLVED", "failed_rows")]
    assert len(app.state.invoices) == 1
    with Ledger(ledger_path) as ledger:
        assert ledger.get_meta("alert:run_failed:reverse") is None
    for text in [failed, caplog.text]:
        assert webhook.url not in text and HOOK_TOKEN not in text and coperniq_sandbox.api_key not in text
        assert bad_key not in text
