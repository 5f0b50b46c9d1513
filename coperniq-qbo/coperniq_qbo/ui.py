"""`coperniq-qbo ui`: the local web console (status, settings, integration log, review queue, disconnect).

It listens on 127.0.0.1 and prints one URL with a random token; the token buys that browser a session cookie.
Serving another interface (--host) needs both --allow-host (the names the browser will use, checked against the
Host header) and a password (COPERNIQ_QBO_UI_PASSWORD, HTTP Basic), because then other machines can reach it.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import secrets
import socket
import threading
import time
import webbrowser
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from coperniq_qbo.console import Console
from coperniq_qbo.errors import EXIT_OK, EXIT_USAGE, CliError
from coperniq_qbo.settings import ENV_PREFIX, Settings, project_root

if TYPE_CHECKING:
    from coperniq_qbo.ui_security import Gate

PASSWORD_ENV = ENV_PREFIX + "UI_PASSWORD"
#: Secrets the console may meet in config text that `Settings.secrets` does not hold.
OTHER_SECRET_ENV = ("SYNC_ALERT_WEBHOOK_URL", "TARGET_QUICKBOOKS_MERGE_ALERT_WEBHOOK_URL", "TAP_COPERNIQ_API_KEY")


class UiServer:
    """uvicorn on a socket bound before it starts (so port 0 gives a known port), run in a thread."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn  # here, not at the top: every other command imports this module for its parser

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, timeout: float = 10.0) -> UiServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise CliError("the console's web server did not start", EXIT_USAGE)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def gate_for(args: argparse.Namespace, env: Mapping[str, str], token: str) -> Gate:
    """The access rules for these flags; refuses a non-loopback interface without --allow-host and a password."""
    from coperniq_qbo.ui_security import LOOPBACK_HOSTS, Gate

    host = args.host
    password = env.get(PASSWORD_ENV) or None
    allowed = set(LOOPBACK_HOSTS)
    if host not in ("127.0.0.1", "localhost", "::1"):
        if not args.allow_host:
            raise CliError(f"--host {host} serves other machines: name the host browsers use with --allow-host NAME")
        if not password:
            raise CliError(f"--host {host} serves other machines: set {PASSWORD_ENV} (HTTP Basic password) first")
    allowed |= {h.strip().lower() for h in args.allow_host or [] if h.strip()}
    user = env.get("USER") or getpass.getuser() or "operator"
    return Gate(token=token, allowed_hosts=frozenset(allowed), password=password, default_user=user)


def cmd_ui(args: argparse.Namespace, settings: Settings, con: Console) -> int:
    """Serve the console until Ctrl-C."""
    from coperniq_qbo.ui_app import build_app  # starlette and jinja2: only for this command
    from coperniq_qbo.ui_config import ConfigStore

    env = dict(os.environ if args.environ is None else args.environ)
    token = secrets.token_urlsafe(24)
    gate = gate_for(args, env, token)
    for name in OTHER_SECRET_ENV:
        settings.extra_secrets.append(env.get(name, ""))
    if gate.password:
        settings.extra_secrets.append(gate.password)
    for secret in settings.secrets:
        con.add_secret(secret)
    store = ConfigStore(project_root(env), env)
    server = UiServer(build_app(settings, store, gate, con), args.host, args.port).start()
    shown = "127.0.0.1" if args.host in ("127.0.0.1", "0.0.0.0") else (args.allow_host or [args.host])[0]
    url = f"http://{shown}:{server.port}/?token={token}"
    try:
        con.say(f"coperniq-qbo console: {url}")  # the token is not a configured secret: it is shown
        con.say("Open it in a browser; Ctrl-C stops the console.")
        if args.browser:
            with contextlib.suppress(Exception):
                webbrowser.open(url)
        while server.thread.is_alive():
            server.thread.join(timeout=0.5)
    finally:
        server.stop()
    return EXIT_OK


def add_ui_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """`ui`, registered by cli.build_parser."""
    p = sub.add_parser("ui", parents=[common], help="local web console: status, settings, log, review queue")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: any free port)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default 127.0.0.1); any other needs --allow-host and " + PASSWORD_ENV,
    )
    p.add_argument(
        "--allow-host",
        dest="allow_host",
        action="append",
        metavar="NAME",
        help="a host name browsers use to reach the console (checked against the Host header); repeatable",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--browser", dest="browser", action="store_true", help="open the URL in a browser")
    which.add_argument("--no-browser", dest="browser", action="store_false", help="only print the URL (default)")
    p.set_defaults(func=cmd_ui, browser=False)
