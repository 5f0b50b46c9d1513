"""`docker build .` from the project, then the image runs the CLI, Meltano and the Dagster code location.

Needs a Docker daemon: where there is none (this project's CI machines have only the client), the test is skipped
with that note; docs/DEPLOY.md says how to run it by hand.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "coperniq-qbo:test"


def _daemon() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30).returncode == 0


@pytest.mark.skipif(not _daemon(), reason="no Docker daemon here: `docker build .` is run where Docker is available")
@pytest.mark.timeout(1800)
def test_the_image_builds_and_runs_the_cli_meltano_and_dagster() -> None:
    build = subprocess.run(["docker", "build", "-t", IMAGE, "."], cwd=ROOT, capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stderr[-4000:]
    for cmd in (["coperniq-qbo", "--help"], ["meltano", "--version"], ["dagster", "--version"]):
        run = subprocess.run(
            ["docker", "run", "--rm", IMAGE, *cmd], capture_output=True, text=True, timeout=300, check=False
        )
        assert run.returncode == 0, (cmd, run.stderr[-2000:])


def test_the_image_installs_what_the_project_installs() -> None:
    """The Dockerfile copies every package the lock's -e lines install, so `make install` in the image works."""
    text = (ROOT / "Dockerfile").read_text()
    packages = [
        line.split()[1].removeprefix("./")
        for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
        if line.startswith("-e ")
    ]
    for package in packages:
        assert f"COPY {package}/ {package}/" in text, package
    assert "make install" in text
