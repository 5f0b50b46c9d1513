"""The singer-sdk standard tap test suite, run against a seeded Coperniq sandbox over HTTP.

get_tap_test_class needs the config (so a live URL) when the class is defined, hence a module-level
sandbox instead of the function-scoped fixture.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from sandbox._server import SandboxServer
from sandbox.coperniq import CoperniqApp
from tap_coperniq.tap import TapCoperniq

API_KEY = "sandbox-coperniq-key"
_server = SandboxServer(CoperniqApp(api_key=API_KEY, rate_limit_per_day=None)).start()
_server.app.seed(projects=30, seed=3)

CONFIG = {
    "api_key": API_KEY,
    "api_url": f"{_server.root_url}/v1",
    "start_date": "2000-01-01T00:00:00Z",
    "max_requests_per_second": 1000,
    "phase_history": True,  # the standard suite wants records in every stream
    "invoice_sweep_interval": 0,  # the same: a sweep every run, this one included
}


@pytest.fixture(scope="module", autouse=True)
def _stop_sandbox() -> Iterator[None]:
    yield
    _server.stop()


TestTapCoperniq = get_tap_test_class(
    tap_class=TapCoperniq,
    config=CONFIG,
    suite_config=SuiteConfig(max_records_limit=40),
)
