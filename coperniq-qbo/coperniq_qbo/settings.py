"""Where `coperniq-qbo` finds its configuration: flags, then env vars, then the project's `.env`, then defaults.

Meltano passes the utility's settings as COPERNIQ_QBO_* env vars; a direct run reads the same names and falls back to
the target's and the tap's vars, so the CLI sees the account the plugins sync. The Merge base URL default is the
target's own constant, so the CLI and the target cannot default to different regions.

The ledger is a DuckDB file (`ledger_path`) or a PostgreSQL database (`ledger_url`, which wins when set), and
`company` picks the tenant in it. The URL carries a password: it is a secret like the tokens, and every message
shows `ledger_display` (the URL without its password) instead.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from coperniq_qbo.env import read_env_file
from coperniq_qbo.errors import CliError
from sync_ledger import DEFAULT_LEDGER_PATH
from sync_ledger.util import ledger_place, url_secrets
from target_quickbooks_merge.settings import DEFAULT_BASE_URL

ENV_PREFIX = "COPERNIQ_QBO_"
TARGET_ENV_PREFIX = "TARGET_QUICKBOOKS_MERGE_"
TAP_ENV_PREFIX = "TAP_QUICKBOOKS_MERGE_"
# Every plugin that needs the account token, so one `connect` re-links the tap, the target and this CLI.
TOKEN_ENV_VARS = (TARGET_ENV_PREFIX + "ACCOUNT_TOKEN", TAP_ENV_PREFIX + "ACCOUNT_TOKEN", ENV_PREFIX + "ACCOUNT_TOKEN")
# Where a secret may also live when the CLI runs outside Meltano (e.g. only the target's vars are set).
FALLBACK_PREFIXES = (TARGET_ENV_PREFIX, TAP_ENV_PREFIX)
DEFAULT_LINK_JS_URL = "https://cdn.merge.dev/initialize.js"
DEFAULT_LOCK_TIMEOUT = 10.0


@dataclass
class Settings:
    """Resolved configuration; secrets are only ever held here and in request headers."""

    merge_api_key: str | None = None
    account_token: str | None = None
    base_url: str = DEFAULT_BASE_URL
    ledger_path: Path = Path(DEFAULT_LEDGER_PATH)
    ledger_url: str | None = None  # postgresql://user:password@host:port/db; a secret, wins over ledger_path
    company: str | None = None  # the tenant in the ledger; None = the default company
    link_js_url: str = DEFAULT_LINK_JS_URL
    env_file: Path = Path(".env")
    end_user_email_address: str | None = None
    end_user_organization_name: str | None = None
    end_user_origin_id: str | None = None
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    extra_secrets: list[str] = field(default_factory=list)

    @property
    def secrets(self) -> list[str]:
        """Every configured secret value, for redaction."""
        ledger = url_secrets(self.ledger_url) if self.ledger_url else ()
        return [s for s in (self.merge_api_key, self.account_token, *ledger, *self.extra_secrets) if s]

    @property
    def on_postgres(self) -> bool:
        """Is the ledger a PostgreSQL database (ledger_url) rather than a DuckDB file?"""
        return bool(self.ledger_url)

    @property
    def ledger_place(self) -> str:
        """What to open: the ledger_url if set, else the ledger_path (never print it: use `ledger_display`)."""
        return self.ledger_url or str(self.ledger_path)

    @property
    def ledger_display(self) -> str:
        """The ledger as messages show it, safe to print: the path, or the URL without its password, plus company."""
        if self.ledger_url:
            from sync_ledger.ledger_db import redact_url  # imports duckdb: only when a message needs it

            where = redact_url(self.ledger_url)
        else:
            where = str(self.ledger_path)
        return where if self.company is None else f"{where} (company {self.company})"


def project_root(env: Mapping[str, str] | None = None) -> Path:
    """The Meltano project root (Meltano sets MELTANO_PROJECT_ROOT), else the working directory."""
    env = os.environ if env is None else env
    return Path(env.get("MELTANO_PROJECT_ROOT") or os.getcwd())


def resolve_settings(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
    """Flags > env (COPERNIQ_QBO_*, then the target's/tap's vars) > the project's .env file > defaults.

    Reading `.env` ourselves makes a direct run (`coperniq-qbo status`) see the token `connect` just wrote,
    exactly as Meltano would.
    """
    env = dict(os.environ if environ is None else environ)
    root = project_root(env)
    env_file = Path(getattr(args, "env_file", None) or env.get(ENV_PREFIX + "ENV_FILE") or root / ".env")
    dotenv = read_env_file(env_file)

    def pick(name: str, *, fallbacks: bool = False) -> str | None:
        flag = getattr(args, name, None)
        if flag not in (None, ""):
            return str(flag)
        names = [ENV_PREFIX + name.upper()]
        if fallbacks:
            names += [prefix + name.upper() for prefix in FALLBACK_PREFIXES]
        for source in (env, dotenv):
            for key in names:
                if source.get(key):
                    return source[key]
        return None

    ledger = pick("ledger_path") or str(root / DEFAULT_LEDGER_PATH)
    # An explicit --ledger-path flag means that file, even when the environment names a ledger_url.
    path_flag = getattr(args, "ledger_path", None) not in (None, "")
    url_flag = getattr(args, "ledger_url", None) not in (None, "")
    url = "" if path_flag and not url_flag else (pick("ledger_url") or "").strip()
    company = pick("company")
    try:
        ledger_place({"ledger_url": url, "company": company, "ledger_path": ledger})
    except ValueError as exc:  # the message names the setting and never shows the URL
        raise CliError(str(exc)) from None
    return Settings(
        merge_api_key=pick("merge_api_key", fallbacks=True),
        account_token=pick("account_token", fallbacks=True),
        base_url=(pick("base_url", fallbacks=True) or DEFAULT_BASE_URL).rstrip("/"),
        ledger_path=Path(os.path.expandvars(ledger)),
        ledger_url=url or None,
        company=(company or "").strip() or None,
        link_js_url=pick("link_js_url") or DEFAULT_LINK_JS_URL,
        env_file=env_file,
        end_user_email_address=pick("end_user_email_address"),
        end_user_organization_name=pick("end_user_organization_name"),
        end_user_origin_id=pick("end_user_origin_id"),
        lock_timeout=float(pick("lock_timeout") or DEFAULT_LOCK_TIMEOUT),
    )
