"""The companies one integrator syncs: a YAML file (or any file the worker can read), one entry per contractor
company, each with the environment its Meltano runs get.

Why environment and not settings: the plugins already read every setting from env vars (Meltano's
TAP_COPERNIQ_API_KEY, TARGET_QUICKBOOKS_MERGE_ACCOUNT_TOKEN, ...), so a company is just a set of them. Secrets stay
out of the file: a value may be `${NAME}`, resolved from the worker's environment when a run starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Where the code location reads the companies unless COPERNIQ_QBO_COMPANIES names another file.
DEFAULT_COMPANIES_FILE = Path(__file__).resolve().parents[1] / "companies.yml"
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class CompaniesError(ValueError):
    """The companies file is missing, malformed, or names an environment variable the worker does not have."""


@dataclass(frozen=True)
class Company:
    """One company: `key` is its partition, its ledger company and its Meltano state_id suffix."""

    key: str
    env: Mapping[str, str] = field(default_factory=dict)

    def resolved_env(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The company's variables with `${NAME}` taken from the worker's environment (a missing one is an error
        naming the company and the variable, never a run with an empty token)."""
        source = os.environ if environ is None else environ
        out: dict[str, str] = {}
        for name, value in self.env.items():

            def lookup(match: re.Match[str], name: str = name) -> str:
                var = match.group(1)
                if var not in source:
                    raise CompaniesError(f"company {self.key!r}: {name} refers to ${{{var}}}, which is not set")
                return source[var]

            out[name] = _REF.sub(lookup, value)
        out["SYNC_COMPANY"] = self.key  # the ledger company, whatever the file says
        return out


def companies_file(environ: Mapping[str, str] | None = None) -> Path:
    source = os.environ if environ is None else environ
    return Path(source.get("COPERNIQ_QBO_COMPANIES") or DEFAULT_COMPANIES_FILE)


def load_companies(path: Path | None = None) -> list[Company]:
    """Read and check the companies file: unique keys that are safe partition names, env values as text."""
    path = path or companies_file()
    try:
        data: Any = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise CompaniesError(
            f"No companies file at {path}: copy deploy/companies.example.yml there, or set COPERNIQ_QBO_COMPANIES"
        ) from None
    except yaml.YAMLError as exc:
        raise CompaniesError(f"{path} is not valid YAML: {exc}") from None
    entries = (data or {}).get("companies") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise CompaniesError(f"{path}: expected a top-level `companies:` list")
    out: list[Company] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise CompaniesError(f"{path}: companies[{i}] needs a `key` (text)")
        key = entry["key"]
        if not _KEY.fullmatch(key):
            raise CompaniesError(f"{path}: company key {key!r} must be letters, digits, '.', '_' or '-' (max 100)")
        if key in seen:
            raise CompaniesError(f"{path}: company key {key!r} is listed twice")
        seen.add(key)
        env = entry.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(k, str) for k in env):
            raise CompaniesError(f"{path}: company {key!r}: `env` must map variable names to values")
        out.append(Company(key, {k: str(v) for k, v in env.items()}))
    return out
