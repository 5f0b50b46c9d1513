"""The console's Starlette app: one page (GET /) and the forms it posts (row decisions, settings, disconnect).

Decisions go through `coperniq_qbo.actions.request`, disconnect through `connect.cmd_disconnect`, the status through
`status.cmd_status`: the console is the CLI with buttons and can never do something the CLI would refuse. Every
value rendered passes the Console's redaction (Jinja's `finalize`), so a secret that reached some text still shows
masked. Bodies are parsed with urllib (plain urlencoded forms; no multipart parser needed).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from coperniq_qbo.actions import RowRef
from coperniq_qbo.actions import request as request_action
from coperniq_qbo.connect import cmd_disconnect
from coperniq_qbo.console import Console
from coperniq_qbo.errors import CliError
from coperniq_qbo.ledger_access import open_ledger
from coperniq_qbo.settings import Settings
from coperniq_qbo.ui_config import MATCHING_STRATEGIES, ConfigStore, as_bool, trigger_value, workflow_views
from coperniq_qbo.ui_data import LogFilter, gather, time_text
from coperniq_qbo.ui_security import Gate, GateMiddleware, Session, csrf_ok
from sync_ledger.ledger_core import LOG_ACTIONS

HERE = Path(__file__).parent
ROW_ACTIONS = ("link", "new", "retry", "dismiss", "undismiss")
MAX_BODY = 64 * 1024


class UiState:
    """The app's state: settings, config store, the redacting Console and the templates."""

    def __init__(self, settings: Settings, store: ConfigStore, con: Console) -> None:
        self.settings = settings
        self.store = store
        self.con = con
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            finalize=lambda value: "" if value is None else con.clean(str(value)),
        )
        env.filters["when"] = time_text
        self.templates = Jinja2Templates(env=env)


def session_of(request: Request) -> Session:
    session: Session = request.state.session
    return session


async def read_form(request: Request) -> dict[str, list[str]]:
    """An urlencoded body as parse_qs gives it."""
    raw = await request.body()
    if len(raw) > MAX_BODY:  # no form of the page comes near this; an empty form fails its CSRF check
        return {}
    body = raw.decode("utf-8", errors="replace")
    return parse_qs(body, keep_blank_values=True)


def one(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0].strip()


def back_to(form: dict[str, list[str]]) -> RedirectResponse:
    """303 to the page with the log filters the form came from (rebuilt, so never an outside URL)."""
    query = parse_qs(one(form, "back").lstrip("?"))
    keep = {k: v[0] for k, v in query.items() if k in ("run", "stream", "action", "q", "offset")}
    return RedirectResponse("/" + (f"?{urlencode(keep)}" if keep else "") + "#top", status_code=303)


def forbidden_csrf() -> Response:
    return PlainTextResponse("Forbidden: the form's CSRF token is missing or wrong; nothing changed.\n", 403)


def build_app(settings: Settings, store: ConfigStore, gate: Gate, con: Console) -> Starlette:
    """The console app behind its gate."""
    ui = UiState(settings, store, con)

    async def page(request: Request) -> Response:
        session = session_of(request)
        query = dict(request.query_params.items())
        filt = LogFilter.from_query(query)
        data = await run_in_threadpool(gather, settings, store, filt)
        flash, session.flash = session.flash, []
        context = {
            "d": data,
            "f": filt,
            "csrf": session.csrf,
            "flash": flash,
            "user": session.user,
            "actions": sorted(LOG_ACTIONS),
            "strategies": MATCHING_STRATEGIES,
            "can_save": store.can_save,
            "environment": store.environment or "",
            "back": request.url.query,
            "page_size": len(data.log),
        }
        return ui.templates.TemplateResponse(request, "console.html", context)

    async def row_action(request: Request) -> Response:
        session, form = session_of(request), await read_form(request)
        if not csrf_ok(session, form):
            return forbidden_csrf()
        action = one(form, "action")
        try:
            if action not in ROW_ACTIONS:
                raise CliError(f"unknown action {action!r}")
            ref = RowRef.parse(one(form, "ref"))
            text = await run_in_threadpool(
                _request_row, settings, ref, action, f"console:{session.user}", one(form, "target_id"), form
            )
            session.flash.append(("ok", f"{ref}: {text}"))
        except CliError as exc:
            session.flash.append(("error", str(exc)))
        return back_to(form)

    async def save_settings(request: Request) -> Response:
        session, form = session_of(request), await read_form(request)
        if not csrf_ok(session, form):
            return forbidden_csrf()
        try:
            saved = await run_in_threadpool(_save_settings, settings, store, form)
            session.flash.append(("ok", f"Saved {', '.join(saved)}." if saved else "Nothing changed."))
        except CliError as exc:
            session.flash.append(("error", str(exc)))
        return back_to(form)

    async def disconnect(request: Request) -> Response:
        session = session_of(request)
        if request.method == "GET":
            context = {"csrf": session.csrf, "user": session.user, "ledger": settings.ledger_display}
            return ui.templates.TemplateResponse(request, "disconnect.html", context)
        form = await read_form(request)
        if not csrf_ok(session, form):
            return forbidden_csrf()
        if one(form, "confirm") != "yes":
            session.flash.append(("ok", "Cancelled: nothing changed."))
            return back_to(form)
        out = io.StringIO()
        quiet = Console(settings.secrets, out=out, err=out)
        try:
            await run_in_threadpool(cmd_disconnect, argparse.Namespace(yes=True), settings, quiet)
            session.flash += [("ok", line) for line in out.getvalue().splitlines() if line.strip()]
        except CliError as exc:
            session.flash.append(("error", str(exc)))
        except Exception as exc:  # noqa: BLE001 - Merge errors: one message on the page, never a traceback
            session.flash.append(("error", f"disconnect failed: {type(exc).__name__}: {con.clean(str(exc))}"))
        return back_to(form)

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/row", row_action, methods=["POST"]),
        Route("/settings", save_settings, methods=["POST"]),
        Route("/disconnect", disconnect, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(GateMiddleware, gate=gate)
    return app


def _request_row(
    settings: Settings, ref: RowRef, action: str, by: str, target_id: str, form: dict[str, list[str]]
) -> str:
    """One decision, in a short write transaction (a running sync waits at most that long)."""
    ledger = open_ledger(settings, read_only=False)
    try:
        with ledger.transaction():
            return request_action(
                ledger, ref, action, by=by, target_id=target_id or None, reason=one(form, "reason") or None
            )
    finally:
        ledger.close()


def _save_settings(settings: Settings, store: ConfigStore, form: dict[str, list[str]]) -> list[str]:
    """Save what the form changed (each `meltano config set` takes seconds); the names saved."""
    config, _ = store.current()
    saved: list[str] = []
    invoice_sync = one(form, "invoice_sync") == "on"
    if invoice_sync != as_bool(config.get("invoice_sync")):
        store.save("invoice_sync", invoice_sync)
        saved.append(f"invoice sync {'on' if invoice_sync else 'off'}")
    strategy = one(form, "matching_strategy")
    if strategy and strategy != str(config.get("matching_strategy") or "enrich"):
        if strategy not in MATCHING_STRATEGIES:
            raise CliError(f"matching strategy {strategy!r} is not one of {', '.join(MATCHING_STRATEGIES)}")
        store.save("matching_strategy", strategy)
        saved.append(f"matching strategy {strategy}")
    if one(form, "has_triggers") == "1":
        ledger = open_ledger(settings, read_only=True)
        try:
            views, others = workflow_views(ledger, config.get("trigger_phases"))
        finally:
            if ledger is not None:
                ledger.close()
        chosen = {k[len("phase:") :]: v[0] for k, v in form.items() if k.startswith("phase:")}
        value = trigger_value(views, chosen, others)
        if [(v.id, v.trigger or "") for v in views] != [(v.id, chosen.get(v.id, "")) for v in views]:
            store.save("trigger_phases", value)
            saved.append("trigger phases")
    return saved
