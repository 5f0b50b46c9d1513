"""Atomic, permission-safe updates of the Meltano project's `.env` file.

`coperniq-qbo connect` stores the Merge account token there because Meltano loads `.env` into every plugin's
environment (env vars beat meltano.yml), so one write reconnects the tap, the target and this CLI.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

_KEY_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_\-.:/@+]*$")


def _quote(value: str) -> str:
    """Quote only when needed, in a form python-dotenv (Meltano's parser) reads back verbatim."""
    if _PLAIN_VALUE.match(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def update_env_file(path: str | os.PathLike[str], values: Mapping[str, str | None]) -> Path:
    """Set (or, with None, remove) keys in a dotenv file, keeping every other line as it was.

    Written to a temp file in the same directory and renamed over the original, so a crash never leaves
    a half-written `.env`; the result is chmod 600 because it holds credentials.
    """
    target = Path(path)
    lines: list[str] = []
    if target.exists():
        lines = target.read_text(encoding="utf-8").splitlines()
    pending = dict(values)
    out: list[str] = []
    for line in lines:
        m = _KEY_LINE.match(line)
        if m and m.group(1) in values:
            key = m.group(1)
            if key in pending:  # first occurrence is replaced, later duplicates dropped
                value = pending.pop(key)
                if value is not None:
                    out.append(f"{key}={_quote(value)}")
            continue
        out.append(line)
    for key, value in pending.items():
        if value is not None:
            out.append(f"{key}={_quote(value)}")
    text = "\n".join(out) + ("\n" if out else "")

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".env.", suffix=".tmp", dir=str(target.parent))
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.chmod(target, 0o600)
    return target


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Minimal dotenv reader (KEY=value, optional quotes/export), enough to read back what we wrote."""
    result: dict[str, str] = {}
    target = Path(path)
    if not target.exists():
        return result
    for line in target.read_text(encoding="utf-8").splitlines():
        m = _KEY_LINE.match(line)
        if not m:
            continue
        raw = line[m.end() :].strip()
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
            raw = raw[1:-1]
            if line[m.end() :].strip().startswith('"'):
                raw = raw.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        result[m.group(1)] = raw
    return result
