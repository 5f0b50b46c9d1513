"""The settings the console edits (trigger phases, invoice sync, matching strategy): read as the target gets them,
written with `meltano config set` in the Meltano project, so meltano.yml stays the one place they live.

`meltano config` ignores the default environment unless told, while runs use it; both reading and writing
therefore name the environment (MELTANO_ENVIRONMENT, else meltano.yml's default_environment), so what the console
shows and saves is what the next run uses. `meltano config print` takes seconds: its answer is kept until
meltano.yml or .env changes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coperniq_qbo.errors import CliError
from coperniq_qbo.target_config import TARGET, load_target_config
from sync_ledger import Ledger
from sync_ledger.triggers import normalize_name, parse_trigger_phases, resolve_rules

#: setting -> the plugins that hold it (tap-coperniq reads trigger_phases too, to skip payment reads).
SETTING_PLUGINS: dict[str, tuple[str, ...]] = {
    "trigger_phases": ("tap-coperniq", TARGET),
    "invoice_sync": (TARGET,),
    "matching_strategy": (TARGET,),
}
MATCHING_STRATEGIES = ("enrich", "replace", "skip")
_DEFAULT_ENV = re.compile(r"^default_environment:\s*['\"]?([A-Za-z0-9_.-]+)", re.MULTILINE)


@dataclass(frozen=True)
class WorkflowView:
    """One Coperniq workflow with its phases and the trigger phase configured for it (its id, or None)."""

    id: str
    name: str
    phases: tuple[tuple[str, str], ...]  # (id, name)
    trigger: str | None


def meltano_env(root: Path, env: Mapping[str, str]) -> str | None:
    """The environment runs use: MELTANO_ENVIRONMENT, else meltano.yml's default_environment."""
    if env.get("MELTANO_ENVIRONMENT"):
        return env["MELTANO_ENVIRONMENT"]
    try:
        match = _DEFAULT_ENV.search((root / "meltano.yml").read_text(encoding="utf-8"))
    except OSError:
        return None
    return match.group(1) if match else None


def meltano_bin(env: Mapping[str, str], root: Path) -> str | None:
    """meltano on PATH, else beside this Python (a venv run without activating it), else the project's .venv (a
    `meltano invoke` puts only the plugin's own venv on PATH)."""
    found = shutil.which("meltano", path=env.get("PATH"))
    if found:
        return found
    for candidate in (Path(sys.executable).parent / "meltano", root / ".venv" / "bin" / "meltano"):
        if candidate.exists():
            return str(candidate)
    return None


class ConfigStore:
    """Reads (cached) and writes the console's settings in one Meltano project."""

    def __init__(self, root: Path, environ: Mapping[str, str]) -> None:
        self.root = root
        self.env = dict(environ)
        self.env["MELTANO_PROJECT_ROOT"] = str(root)
        environment = meltano_env(root, self.env)
        if environment:
            self.env["MELTANO_ENVIRONMENT"] = environment
        self.environment = environment
        self.meltano = meltano_bin(self.env, root)
        if self.meltano:  # load_target_config looks meltano up on PATH
            self.env["PATH"] = os.pathsep.join([str(Path(self.meltano).parent), self.env.get("PATH", "")])
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, ...], dict[str, Any], str] | None = None

    @property
    def can_save(self) -> bool:
        return self.meltano is not None and (self.root / "meltano.yml").exists()

    def _stamp(self) -> tuple[int, ...]:
        out = []
        for name in ("meltano.yml", ".env"):
            try:
                out.append((self.root / name).stat().st_mtime_ns)
            except OSError:
                out.append(0)
        return tuple(out)

    def current(self) -> tuple[dict[str, Any], str]:
        """(target config, where it came from), as the target would get it."""
        with self._lock:
            stamp = self._stamp()
            if self._cached is None or self._cached[0] != stamp:
                args = argparse.Namespace(target_config=None, no_meltano=False)
                config, source = load_target_config(args, self.env)
                self._cached = (stamp, config, source)
            return dict(self._cached[1]), self._cached[2]

    def save(self, name: str, value: Any) -> None:
        """`meltano config set <plugin> <name> <json>` for every plugin holding the setting."""
        if not self.can_save:
            raise CliError(f"cannot save {name}: no Meltano project (meltano.yml and meltano) in {self.root}")
        text = json.dumps(value)
        for plugin in SETTING_PLUGINS[name]:
            cmd = [str(self.meltano)]
            if self.environment:
                cmd.append(f"--environment={self.environment}")
            cmd += ["config", "set", plugin, name, text]
            proc = subprocess.run(
                cmd, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=120, check=False
            )
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                raise CliError(f"meltano config set {plugin} {name} failed: {tail[0]}")
        with self._lock:  # what meltano now holds, without another `config print` of seconds
            if self._cached is not None:
                config = dict(self._cached[1])
                config[name] = value
                self._cached = (self._stamp(), config, self._cached[2])


def as_bool(value: Any) -> bool:
    """Meltano's booleans arrive as bools or text."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def workflow_views(ledger: Ledger | None, raw: Any) -> tuple[list[WorkflowView], list[dict[str, Any]]]:
    """The staged workflows with the trigger phase configured for each, and the configured entries that match none
    of them (kept as they are when saving)."""
    workflows = [p for _, p, _, _ in ledger.iter_staged("coperniq", "workflows")] if ledger is not None else []
    specs, _ = parse_trigger_phases(raw) if raw else ([], [])
    rules, _ = resolve_rules(specs, workflows)
    views: list[WorkflowView] = []
    used: set[int] = set()
    for wf in sorted(workflows, key=lambda w: str(w.get("name") or "")):
        phases = tuple((str(p.get("id")), str(p.get("name") or p.get("id"))) for p in wf.get("phases") or [])
        trigger = None
        for i, rule in enumerate(rules):
            if rule.matches_project({"workflowId": wf.get("id"), "workflowName": wf.get("name")}):
                used.add(i)
                trigger = next(
                    (
                        pid
                        for pid, pname in phases
                        if (rule.phase_id is not None and pid == str(rule.phase_id))
                        or normalize_name(pname) == rule.phase_name
                    ),
                    None,
                )
                break
        views.append(WorkflowView(str(wf.get("id")), str(wf.get("name") or wf.get("id")), phases, trigger))
    others = [{"workflow": r.spec.workflow, "phase": r.spec.phase} for i, r in enumerate(rules) if i not in used]
    return views, others


def trigger_value(views: Iterable[WorkflowView], chosen: Mapping[str, str], others: list[dict[str, Any]]) -> Any:
    """The trigger_phases JSON from the form's choice per workflow (by name, as people write it)."""
    out: list[dict[str, Any]] = []
    for wf in views:
        pid = chosen.get(wf.id, "")
        name = dict(wf.phases).get(pid)
        if name:
            out.append({"workflow": wf.name, "phase": name})
    return out + others
