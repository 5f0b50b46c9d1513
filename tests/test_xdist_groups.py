"""`xdist_group` marks must take effect under `make test` (`-n 3 --dist loadgroup`): the Meltano tests rely on them
to share one worker (.meltano/run/), the dbt model tests to build their fixtures once. pytest-xdist applies a group
by suffixing the test's node id with `@<group>`; when a pytest release changes how node ids are stored, the marks are
dropped without a word, which this test catches."""

from __future__ import annotations

import pytest


@pytest.mark.xdist_group("group_probe")
def test_an_xdist_group_mark_takes_effect(request: pytest.FixtureRequest) -> None:
    option = request.config.option
    if not getattr(option, "loadgroup", False):
        pytest.skip("not an xdist worker under --dist loadgroup")
    assert request.node.nodeid.endswith("@group_probe"), request.node.nodeid
