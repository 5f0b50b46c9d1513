"""The Coperniq sandbox's `Date` header: the clock that stamps `updatedAt` (frozen or moved by tests), plus the
profile switch `date_header_skew_s` (ASSUMPTION 15 of tap-coperniq)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
import requests

from sandbox.coperniq import CoperniqApp
from tests.conftest import RunningSandbox, start_coperniq, start_merge

T = 10  # request timeout, seconds
FROZEN_AT = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def served_dates(sb: RunningSandbox, path: str = "/projects") -> list[datetime]:
    response = requests.get(f"{sb.url}{path}", headers={"x-api-key": sb.api_key}, timeout=T)
    assert response.status_code == 200
    return [parsedate_to_datetime(value) for value in response.raw.headers.getlist("Date")]


@pytest.fixture(params=["optimistic", "pessimistic"])
def sandbox(request: pytest.FixtureRequest) -> Iterator[RunningSandbox]:
    sb = start_coperniq(profile=request.param)
    sb.app.state.clock.set(FROZEN_AT)
    yield sb
    sb.server.stop()


def test_profiles_set_the_skew() -> None:
    assert CoperniqApp().assumptions.date_header_skew_s == 0.0
    assert CoperniqApp(profile="pessimistic").assumptions.date_header_skew_s == 60.0
    assert CoperniqApp(profile="pessimistic", date_header_skew_s=0).assumptions.date_header_skew_s == 0


def test_date_is_the_stamping_clock_plus_the_skew(sandbox: RunningSandbox) -> None:
    app = sandbox.app
    skew = timedelta(seconds=app.assumptions.date_header_skew_s)
    assert served_dates(sandbox) == [FROZEN_AT + skew]  # one Date header, the app's (not http.server's own)
    project = app.add_project("Smith Solar")
    assert datetime.fromisoformat(project["updatedAt"]) - FROZEN_AT < timedelta(seconds=1)  # the same clock
    app.state.clock.advance(90.5)
    assert served_dates(sandbox) == [FROZEN_AT + skew + timedelta(seconds=90)]  # whole seconds, rounded down
    assert served_dates(sandbox, "/workflows") == [FROZEN_AT + skew + timedelta(seconds=90)]


def test_admin_profile_changes_the_skew(sandbox: RunningSandbox) -> None:
    root = sandbox.server.root_url
    resp = requests.post(f"{root}/__admin/profile", json={"date_header_skew_s": -30}, timeout=T)
    assert resp.status_code == 200 and resp.json()["date_header_skew_s"] == -30
    assert served_dates(sandbox) == [FROZEN_AT - timedelta(seconds=30)]


def test_merge_keeps_the_real_clock() -> None:
    sb = start_merge()
    try:
        before = datetime.now(UTC).replace(microsecond=0)
        response = requests.get(
            f"{sb.url}/accounts",
            headers={"Authorization": f"Bearer {sb.api_key}", "X-Account-Token": sb.account_token or ""},
            timeout=T,
        )
        (date,) = response.raw.headers.getlist("Date")
        assert before <= parsedate_to_datetime(date) <= datetime.now(UTC)
    finally:
        sb.server.stop()
