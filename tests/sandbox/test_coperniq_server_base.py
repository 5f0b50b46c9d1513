"""sandbox._server (shared by both emulators) and the Coperniq/seed command lines."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from sandbox._server import HttpError, RateLimiter, Request, Response, SandboxApp, SandboxServer, is_loopback
from tests.conftest import stop_process

ROOT = Path(__file__).resolve().parents[2]
T = 10


def test_rate_limiter_windows() -> None:
    rl = RateLimiter([(2, 0.3), (5, 60.0)])
    assert rl.hit("k") == (True, 5, 4, 0.0)  # headline = longest window
    assert rl.hit("k")[:3] == (True, 5, 3)
    allowed, limit, remaining, retry = rl.hit("k")
    assert (allowed, limit, remaining) == (False, 5, 3) and 0 < retry <= 0.3  # rejected hits don't count
    assert rl.hit("other")[0] is True  # per key
    time.sleep(0.32)
    assert rl.hit("k")[:3] == (True, 5, 2)
    assert rl.hit("k")[:3] == (True, 5, 1)
    time.sleep(0.32)
    assert rl.hit("k")[:3] == (True, 5, 0)
    allowed, _, remaining, retry = rl.hit("k")
    assert not allowed and remaining == 0 and 59 < retry <= 60
    rl.reset()
    assert rl.hit("k")[0] is True
    unlimited = RateLimiter([(0, 1.0), (0, 86400.0)])
    assert all(unlimited.hit("k") == (True, 0, 0, 0.0) for _ in range(1000))


class _Toy(SandboxApp):
    name = "toy"

    def __init__(self) -> None:
        super().__init__()

        @self.route("GET", "/v1/boom")
        def boom(req: Request) -> Response:
            raise RuntimeError("sandbox bug")

        @self.route("GET", "/v1/teapot")
        def teapot(req: Request) -> Response:
            raise HttpError(418, "short and stout", "TEAPOT", field="spout")

        @self.route("POST", "/v1/echo/{name}")
        def echo(req: Request) -> Response:
            return Response(201, {"name": req.path_params["name"], "body": req.json(), "q": req.arg("q")})


@pytest.fixture
def toy() -> Any:
    server = SandboxServer(_Toy()).start()
    yield server
    server.stop()


def test_base_dispatch_errors_and_routing(toy: Any) -> None:
    url = toy.root_url
    resp = requests.get(f"{url}/v1/boom", timeout=T)
    assert resp.status_code == 500 and resp.json()["code"] == "INTERNAL_SERVER_ERROR"
    assert requests.get(f"{url}/v1/teapot", timeout=T).json() == {
        "message": "short and stout",
        "code": "TEAPOT",
        "field": "spout",
    }
    resp = requests.post(f"{url}/v1/echo/abc?q=1", json={"x": 1}, timeout=T)
    assert resp.status_code == 201 and resp.json() == {"name": "abc", "body": {"x": 1}, "q": "1"}
    assert requests.post(f"{url}/v1/echo/abc", data=b"{bad", timeout=T).status_code == 400
    assert requests.get(f"{url}/v1/echo/abc", timeout=T).status_code == 405
    assert requests.get(f"{url}/v1/nothing", timeout=T).status_code == 404
    assert requests.get(f"{url}/__admin/health", timeout=T).json() == {"ok": True, "name": "toy"}
    stats = requests.get(f"{url}/__admin/stats", timeout=T).json()
    assert stats["total"] == 6 and stats["by_status"]["500"] == 1


def test_only_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.com")
    with pytest.raises(ValueError, match="loopback"):
        SandboxServer(_Toy(), host="0.0.0.0")


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # callers assert the exit code
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_coperniq_cli_serves_and_refuses_public_hosts() -> None:
    refused = _run(["sandbox.coperniq", "--host", "0.0.0.0", "--port", "0"])
    assert refused.returncode == 2 and "loopback" in refused.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox.coperniq", "--port", "0", "--seed", "3", "--projects", "6"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # one line with the URL, printed once serving
        url = line.split("listening on ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        projects = requests.get(
            f"{url}/projects",
            headers={"x-api-key": "sandbox-coperniq-key"},
            params={"include_archived": "true"},
            timeout=T,
        ).json()
        assert len(projects) == 6
        # and the seed CLI adds to a running sandbox over /__admin/seed
        seeded = _run(["sandbox.seed", "--projects", "4", "--seed", "9", "--coperniq-url", url])
        assert seeded.returncode == 0, seeded.stderr
        summary = requests.get(url[:-3] + "/__admin/state/summary", timeout=T).json()
        assert summary["projects"] == 10 and summary["workflows"] == 3  # workflows/catalog are reused
    finally:
        stop_process(proc)
