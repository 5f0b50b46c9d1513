"""target-quickbooks-merge's configuration as `coperniq-qbo doctor` sees it, judged by the target's own rules.

Doctor reads the config from where the target gets it (a JSON file, `meltano config print`, or the
TARGET_QUICKBOOKS_MERGE_* variables) and validates it with `target_quickbooks_merge.settings.Settings.from_config`,
so the checklist can never pass a config the target would stop on, or read a setting differently from it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from singer_sdk.exceptions import ConfigValidationError

from coperniq_qbo.errors import CliError
from coperniq_qbo.settings import TARGET_ENV_PREFIX, project_root
from target_quickbooks_merge.settings import Settings as TargetSettings

TARGET = "target-quickbooks-merge"
# Settings whose values may arrive as JSON text (an env var, or a meltano.yml value that names one).
_JSON_SETTINGS = ("trigger_phases",)
# The target's validation messages start with the setting they are about: "name: ..." or "name[3]: ...".
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class TargetView:
    """The settings the target would run with, and the messages it would stop on (one per bad setting).

    A setting the target rejects is left at its default in `settings`, so the other checks still run; `settings` is
    None when the target cannot read the config at all (a value of the wrong type).
    """

    settings: TargetSettings | None
    errors: tuple[str, ...] = ()


def parse_env_value(raw: str) -> Any:
    """Meltano writes arrays/objects/booleans to env vars as JSON; plain strings stay strings."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def load_target_config(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], str]:
    """(config, where it came from): --config file, else `meltano config print`, else TARGET_* env vars."""
    config, source = _read_target_config(args, dict(os.environ if environ is None else environ))
    for name in _JSON_SETTINGS:
        if isinstance(config.get(name), str):
            config[name] = parse_env_value(config[name])
    return config, source


def _read_target_config(args: argparse.Namespace, env: dict[str, str]) -> tuple[dict[str, Any], str]:
    """The config from the first source that has one, as it came (no validation)."""
    if args.target_config:
        path = Path(args.target_config)
        try:
            return json.loads(path.read_text(encoding="utf-8")), f"--config {path}"
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read --config {path}: {exc}") from exc
    root = project_root(env)
    meltano = shutil.which("meltano")
    if not args.no_meltano and meltano and (root / "meltano.yml").exists():
        cmd = [meltano]
        if env.get("MELTANO_ENVIRONMENT"):
            cmd.append(f"--environment={env['MELTANO_ENVIRONMENT']}")
        cmd += ["config", "print", TARGET, "--format", "json"]  # safe by default: secrets come back masked
        try:
            proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120, env=env, check=False)
            if proc.returncode == 0:
                return json.loads(proc.stdout), "meltano config print " + TARGET
        except (OSError, subprocess.TimeoutExpired, ValueError):
            pass
    config = {
        k[len(TARGET_ENV_PREFIX) :].lower(): parse_env_value(v)
        for k, v in env.items()
        if k.startswith(TARGET_ENV_PREFIX) and v != ""
    }
    source = f"{TARGET_ENV_PREFIX}* environment variables" if config else "nothing (no --config, meltano or env vars)"
    return config, source


def setting_of(message: str) -> str:
    """The setting a target validation message is about ("trigger_phases[1]: ..." -> "trigger_phases")."""
    match = _SETTING_NAME.match(message)
    return match.group(0) if match else ""


def validate_target_config(config: Mapping[str, Any]) -> TargetView:
    """The target's own validation of `config`; unset (null) values count as not given, as for the target."""
    given = {k: v for k, v in config.items() if v is not None}
    settings, errors = _build(given)
    if settings is None:  # again without the settings it named, for the checks that read the others
        rejected = {setting_of(message) for message in errors}
        settings, more = _build({k: v for k, v in given.items() if k not in rejected})
        errors += tuple(message for message in more if message not in errors)
    return TargetView(settings, errors)


def _build(config: Mapping[str, Any]) -> tuple[TargetSettings | None, tuple[str, ...]]:
    """(settings, no errors) or (None, the messages the target would stop with)."""
    try:
        return TargetSettings.from_config(config), ()
    except ConfigValidationError as exc:
        return None, tuple(exc.errors) or (str(exc),)
    except (TypeError, ValueError, AttributeError) as exc:  # a value of the wrong type: in a real run the SDK's
        # schema check stops it before from_config, so no message names the setting
        return None, (f"the target cannot read its config: {type(exc).__name__}: {exc}",)
