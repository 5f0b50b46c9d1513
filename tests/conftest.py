"""Shared fixtures: both sandboxes on 127.0.0.1 (random ports), fresh per test unless a module asks otherwise."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the sandbox package lives at the repo root
    sys.path.insert(0, str(ROOT))

from sandbox._server import SandboxServer  # noqa: E402

if TYPE_CHECKING:
    from sandbox.postgres import PostgresServer

COPERNIQ_KEY = "sandbox-coperniq-key"
MERGE_KEY = "sandbox-merge-key"
MERGE_ACCOUNT_TOKEN = "sandbox-account-token"


@dataclass
class RunningSandbox:
    """A sandbox started for a test: its URL, credentials and the live app (state, faults, stats)."""

    server: SandboxServer
    url: str
    api_key: str
    account_token: str | None = None

    @property
    def app(self) -> Any:
        return self.server.app

    @property
    def state(self) -> Any:
        return self.server.app.state

    @property
    def faults(self) -> Any:
        return self.server.app.faults

    @property
    def stats(self) -> Any:
        return self.server.app.stats


def meltano_sys_dir(path: Path) -> Path:
    """A .meltano of a test's own at `path` (MELTANO_SYS_DIR_ROOT): the installed plugin venvs only, no system db,
    state or ledger, as on a new worker; Meltano processes of other tests keep their files apart."""
    path.mkdir()
    for kind in ("extractors", "loaders", "utilities"):
        if (ROOT / ".meltano" / kind).exists():
            (path / kind).symlink_to(ROOT / ".meltano" / kind)
    return path


def start_coperniq(**kwargs: Any) -> RunningSandbox:
    from sandbox.coperniq import CoperniqApp

    server = SandboxServer(CoperniqApp(api_key=COPERNIQ_KEY, **kwargs)).start()
    return RunningSandbox(server, f"{server.root_url}/v1", COPERNIQ_KEY)


def start_merge(**kwargs: Any) -> RunningSandbox:
    from sandbox.merge import MergeApp

    server = SandboxServer(MergeApp(api_key=MERGE_KEY, account_token=MERGE_ACCOUNT_TOKEN, **kwargs)).start()
    return RunningSandbox(server, f"{server.root_url}/api/accounting/v1", MERGE_KEY, MERGE_ACCOUNT_TOKEN)


@dataclass
class RunningCompany:
    """One company of a multi-company sandbox: the server's URL, this company's credentials and its own app."""

    server: SandboxServer
    url: str
    api_key: str
    account_token: str | None
    app: Any

    @property
    def state(self) -> Any:
        return self.app.state

    @property
    def faults(self) -> Any:
        return self.app.faults

    @property
    def stats(self) -> Any:
        return self.app.stats


@dataclass
class RunningMultiSandbox(RunningSandbox):
    """A multi-company sandbox (sandbox/companies.py): `app` is the multi app (it has no `state` of its own),
    `api_key` the Merge organization's key ("" for Coperniq, where each company has its own)."""

    def add_company(self, key: str, **kwargs: Any) -> RunningCompany:
        """A new company reached with `key` (Merge: account token; Coperniq: API key)."""
        self.app.add_company(key, **kwargs)
        return self.company(key)

    def company(self, key: str) -> RunningCompany:
        merge = self.app.name == "merge"
        return RunningCompany(
            self.server, self.url, self.api_key if merge else key, key if merge else None, self.app.company(key)
        )


def start_multi_coperniq(*api_keys: str, **defaults: Any) -> RunningMultiSandbox:
    """One Coperniq server with a company per API key (`defaults`: CoperniqApp options of all)."""
    from sandbox.companies import MultiCoperniqApp

    app = MultiCoperniqApp(**defaults)
    for key in api_keys:
        app.add_company(key)
    server = SandboxServer(app).start()
    return RunningMultiSandbox(server, f"{server.root_url}/v1", "")


def start_multi_merge(*account_tokens: str, **defaults: Any) -> RunningMultiSandbox:
    """One Merge server (key MERGE_KEY) with a QuickBooks company per account token (`defaults`: MergeApp options
    of all)."""
    from sandbox.companies import MultiMergeApp

    app = MultiMergeApp(api_key=MERGE_KEY, **defaults)
    for token in account_tokens:
        app.add_company(token)
    server = SandboxServer(app).start()
    return RunningMultiSandbox(server, f"{server.root_url}/api/accounting/v1", MERGE_KEY)


@pytest.fixture
def coperniq_sandbox() -> Iterator[RunningSandbox]:
    """Empty Coperniq emulator (seed it with `sandbox.seed` helpers or the app's admin functions)."""
    sb = start_coperniq()
    yield sb
    sb.server.stop()


@pytest.fixture
def merge_sandbox() -> Iterator[RunningSandbox]:
    """Empty Merge emulator with one linked QuickBooks Online account."""
    sb = start_merge()
    yield sb
    sb.server.stop()


def standard_target_tests(
    target_class: type, config: dict[str, Any], tests: list[type], server: SandboxServer, system: str
) -> type:
    """The given singer-sdk standard target tests against a module-level sandbox `server` (get_target_test_class
    needs the config when the class is defined); afterwards the sandbox must hold nothing the SDK's generic
    streams could have created, and it is stopped."""
    from singer_sdk.testing import get_target_test_class
    from singer_sdk.testing.suites import SingerTestSuite

    suite = SingerTestSuite(kind="target", tests=tests)
    base = get_target_test_class(
        target_class=target_class, config=config, custom_suites=[suite], include_target_tests=False
    )

    class StandardTargetTests(base):  # type: ignore[misc, valid-type]
        """The standard suite; afterwards the sandbox must hold nothing the generic streams could have created."""

        @pytest.fixture(scope="class")
        @classmethod
        def resource(cls) -> Iterator[SandboxServer]:
            yield server
            writes = [e for e in server.app.stats.log if e["method"] in ("POST", "PATCH")]
            server.stop()
            assert writes == [], f"generic Singer streams must not write to {system}: {writes[:3]}"

    return StandardTargetTests


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Meltano subprocess tests share .meltano/run/<plugin>/ in this project: run them on one xdist worker, unless
    they run Meltano on a .meltano of their own (`meltano_private`: meltano_sys_dir), which nothing else touches."""
    for item in items:
        if item.get_closest_marker("meltano") and not item.get_closest_marker("meltano_private"):
            item.add_marker(pytest.mark.xdist_group("meltano"))


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """Stop a sandbox started as a process: SIGTERM, then SIGKILL if it has not exited within 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server (sandbox/postgres.py), one per xdist worker, started only when a test asks.

    No skip when PostgreSQL is missing: the RuntimeError fails the test (`make system-deps` installs it; CI does).
    """
    from sandbox.postgres import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """URL of a fresh, empty database of `pg_server` for this test alone (dropped afterwards)."""
    import uuid

    name = f"test_{uuid.uuid4().hex}"
    yield pg_server.create_database(name)
    pg_server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
