"""Many companies behind one sandbox server: `MultiMergeApp` (one QuickBooks company per Merge linked account) and
`MultiCoperniqApp` (one Coperniq company per API key).

Why: a scale test runs many contractors at once, each "one Coperniq company + one QuickBooks company", against ONE
Merge server and ONE Coperniq server, as in production. Each company is an unchanged `MergeApp` / `CoperniqApp`
(its own data, lock, rate limits, faults and stats); the multi app only picks the company a request belongs to and
hands the request to it, so requests of different companies run concurrently and never share state.

Which company a request belongs to:

* Merge: its `X-Account-Token` header (also a token a company minted through Link); Coperniq: its `x-api-key`.
* Requests without that header (Merge's organization-level and Link endpoints, `/__admin/...`) name the company
  with a query parameter instead (`account_token` / `api_key`; it only selects, it never authenticates, and the
  company does not see it).
* No company named, or an unknown one: answered as the single-company app answers a missing or unknown
  credential (Merge: 401 `{"detail": ...}`; Coperniq: 401 `Invalid API key`).
* Server-wide admin routes need no company: `GET /__admin/health`, `GET /__admin/stats` (totals, plus every
  company's own stats), `POST /__admin/faults` and `POST /__admin/reset` (every company), `GET /__admin/companies`
  (their keys) and `POST /__admin/companies` (add one: `{"account_token" | "api_key": ..., **app options}`).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, ClassVar, Generic, TypeVar

from sandbox._server import Faults, Request, Response, SandboxApp
from sandbox.coperniq_app import CoperniqApp
from sandbox.merge import MergeApp
from sandbox.merge_state import API

A = TypeVar("A", bound=SandboxApp)

#: The realm id of the first QuickBooks company; the next ones count up from it (each company is its own realm).
FIRST_REALM_ID = 9341453050298937

#: Admin routes the multi app answers itself when no company is named: (method or "*", path).
SERVER_ADMIN = {
    ("*", "/__admin/health"),
    ("GET", "/__admin/stats"),
    ("POST", "/__admin/faults"),
    ("POST", "/__admin/reset"),
    ("GET", "/__admin/companies"),
    ("POST", "/__admin/companies"),
}


def header(req: Request, name: str) -> str:
    """A header's value, stripped ("" when absent), whatever the case of its name (the server lower-cases them,
    a request built in-process may not)."""
    value = req.headers.get(name)
    if value is None:
        value = next((v for k, v in req.headers.items() if k.lower() == name), "")
    return value.strip()


class AllCompaniesFaults(Faults):
    """The server's `faults`: a setting made here is made on every company present (each company keeps and applies
    its own `Faults`); `reset()` returns every company to its own initial settings (e.g. a profile's
    `max_concurrent`), not to this object's defaults."""

    def __init__(self, companies: Callable[[], Iterable[SandboxApp]]) -> None:
        super().__init__()
        self._companies = companies

    def update(self, **values: Any) -> None:
        super().update(**values)
        for app in self._companies():
            app.faults.update(**copy.deepcopy(values))

    def reset(self) -> None:
        Faults.update(self, **copy.deepcopy(self._initial))  # this object alone: no broadcast of its defaults
        for app in self._companies():
            app.faults.reset()


class MultiApp(SandboxApp, Generic[A]):
    """Dispatches each request to the company its credential names (see the module docstring); subclasses say how
    a company is made and how a refusal looks.

    `stats` counts every request the server answered (refusals included) and the server-wide `max_in_flight`; each
    company's own `stats` counts its requests alone, as a single-company server would."""

    key_header: ClassVar[str]  # lower-case header naming the company on API requests
    key_param: ClassVar[str]  # query parameter naming it on any request (admin, organization level)

    def __init__(self, **defaults: Any) -> None:
        """`defaults`: options of every company's app (`add_company` overrides them)."""
        super().__init__()
        self.defaults = defaults
        self._companies: dict[str, A] = {}
        self._current = threading.local()  # the company serving this thread's request (for its Date header)
        self.faults = AllCompaniesFaults(lambda: list(self._companies.values()))

    # --- companies ------------------------------------------------------------------------------------------------
    def new_app(self, key: str, index: int, **kwargs: Any) -> A:
        """The app of a new company (the `index`-th, from 0)."""
        raise NotImplementedError

    def owns(self, app: A, key: str) -> bool:
        """Whether `key`, not one a company was added with, is still one of `app`'s (e.g. minted through Link)."""
        return False

    def refusal(self, req: Request, key: str) -> Response:
        """The single-company app's answer to a request naming no company (`key` "") or an unknown one."""
        raise NotImplementedError

    def add(self, key: str, **kwargs: Any) -> A:
        """A new, empty company reached with `key`; `kwargs` are options of its app, on top of `defaults`
        (`add_company` of the subclasses, named after their credential)."""
        if not key or key != key.strip():
            raise ValueError(f"a company's key must be non-empty without surrounding blanks, not {key!r}")
        with self.lock:
            if self.find(key) is not None:
                raise ValueError(f"a company with key {key!r} exists already")
            app = self.new_app(key, len(self._companies), **{**self.defaults, **kwargs})
            self._companies[key] = app
            return app

    def company(self, key: str) -> A:
        """The company reached with `key` (KeyError if none)."""
        app = self.find(key)
        if app is None:
            raise KeyError(key)
        return app

    def find(self, key: str) -> A | None:
        """The company `key` names: the one added with it, else one that owns it (None: no company)."""
        app = self._companies.get(key)
        if app is None and key:
            app = next((c for c in list(self._companies.values()) if self.owns(c, key)), None)
        return app

    @property
    def companies(self) -> dict[str, A]:
        """Every company by the key it was added with, in the order added (a copy)."""
        return dict(self._companies)

    # --- dispatch -------------------------------------------------------------------------------------------------
    def dispatch(self, req: Request) -> Response | None:
        """Hand `req` to its company (which counts it in its own stats), answer a server-wide admin route, or
        refuse as the single-company app would."""
        self._current.app = None
        admin = req.path.startswith("/__admin/")
        key = header(req, self.key_header) or (req.arg(self.key_param) or "").strip()
        if not key and admin and (("*", req.path) in SERVER_ADMIN or (req.method, req.path) in SERVER_ADMIN):
            if req.path == "/__admin/stats" and req.method == "GET":
                return Response(200, self.stats_snapshot())
            return self._admin(req)
        app = self.find(key) if key else None
        if app is None:
            return self.refusal(req, key)
        sub = req
        if self.key_param in req.query:
            sub = replace(req, query={k: v for k, v in req.query.items() if k != self.key_param})
        self._current.app = app
        if admin:
            return app.dispatch(sub)
        self.stats.enter()
        try:
            resp = app.dispatch(sub)
        finally:
            self.stats.leave()
        req.route, req.path_params = sub.route, sub.path_params  # the server's stats count routes too
        if resp is not None:
            app.stats.add(sub, resp.status)
        return resp

    def http_date(self) -> str | None:
        """The `Date` of the company that served this thread's request (Coperniq's follows its clock)."""
        app: A | None = getattr(self._current, "app", None)
        return app.http_date() if app is not None else None

    # --- server-wide admin ----------------------------------------------------------------------------------------
    def reset_state(self) -> None:
        """Every company's data and stats start over (POST /__admin/reset; faults: `AllCompaniesFaults.reset`)."""
        for app in self._companies.values():
            with app.lock:
                app.reset_state()
            app.stats.reset()

    def stats_snapshot(self) -> dict[str, Any]:
        """The server's totals, the concurrency figures of all companies, and each company's own snapshot."""
        snap = self.stats.snapshot()
        companies = {key: app.stats.snapshot() for key, app in self.companies.items()}
        snap["concurrency_429"] = sum(s["concurrency_429"] for s in companies.values())
        snap["max_in_flight_per_key"] = max((s["max_in_flight_per_key"] for s in companies.values()), default=0)
        snap["companies"] = companies
        return snap

    def admin(self, req: Request) -> Response | None:
        """GET /__admin/companies (the keys) and POST /__admin/companies (add one)."""
        if req.path != "/__admin/companies":
            return None
        if req.method == "GET":
            return Response(200, {"companies": list(self._companies)})
        body = dict(req.json() or {})
        key = body.pop(self.key_param, None)
        if not isinstance(key, str):
            raise ValueError(f"{self.key_param} (a string) is required")
        self.add(key, **body)
        return Response(201, {self.key_param: key})


class MultiMergeApp(MultiApp[MergeApp]):
    """One Merge organization (one `api_key`) with a linked account per QuickBooks company: each company is its own
    `MergeApp`, reached with its account token. Each gets its own realm id (counting up from `FIRST_REALM_ID`)
    unless `realm_id` is given, as no two QuickBooks companies share one.

    Organization-level endpoints (`/linked-accounts`, `/link-token`, ...) and Link answer for one company too:
    name it with `?account_token=` (or send its X-Account-Token)."""

    name = "merge"
    key_header = "x-account-token"
    key_param = "account_token"

    def __init__(self, api_key: str = "sandbox-merge-key", **defaults: Any) -> None:
        """`api_key`: the organization's, the same for every company; `defaults`: `MergeApp` options of all."""
        super().__init__(**defaults)
        self.api_key = api_key
        # asks "whose key, whose token?" as MergeApp does; its own token "" is never one a request sends
        self._auth = MergeApp(api_key=api_key, account_token="")

    def new_app(self, key: str, index: int, **kwargs: Any) -> MergeApp:
        if "api_key" in kwargs:
            raise ValueError("the Merge API key is the organization's: set it on MultiMergeApp")
        kwargs.setdefault("realm_id", str(FIRST_REALM_ID + index))
        return MergeApp(api_key=self.api_key, account_token=key, **kwargs)

    def add_company(self, account_token: str, **merge_app_kwargs: Any) -> MergeApp:
        """A new QuickBooks company linked with `account_token`; `merge_app_kwargs`: `MergeApp` options."""
        return self.add(account_token, **merge_app_kwargs)

    def owns(self, app: MergeApp, key: str) -> bool:
        """A linked account made through Link belongs to the company whose Link flow made it."""
        return key in app.state.accounts

    def refusal(self, req: Request, key: str) -> Response:
        """MergeApp's 401: a bad or missing API key on an API request first, then the missing/unknown token."""
        if not req.path.startswith("/__admin/"):
            _, error = self._auth.authenticate(req)
            if error is not None:
                return error
        probe = Request(
            "GET",
            f"{API}/account-details",
            {},
            {"authorization": f"Bearer {self.api_key}", "x-account-token": key},
            b"",
        )
        _, error = self._auth.authenticate(probe)
        assert error is not None  # no account of the probe app has a token a request can send
        return error


class MultiCoperniqApp(MultiApp[CoperniqApp]):
    """One Coperniq server with many companies: each is its own `CoperniqApp`, reached with its API key.

    Ids count from the same start in every company (each app numbers its own records), so two companies' records
    may share an id, never data."""

    name = "coperniq"
    key_header = "x-api-key"
    key_param = "api_key"

    def __init__(self, **defaults: Any) -> None:
        """`defaults`: `CoperniqApp` options of every company."""
        super().__init__(**defaults)
        self._auth = CoperniqApp(api_key="")  # refuses every key, as CoperniqApp refuses a wrong one

    def new_app(self, key: str, index: int, **kwargs: Any) -> CoperniqApp:
        return CoperniqApp(api_key=key, **kwargs)

    def add_company(self, api_key: str, **kwargs: Any) -> CoperniqApp:
        """A new Coperniq company reached with `api_key`; `kwargs`: `CoperniqApp` options."""
        return self.add(api_key, **kwargs)

    def refusal(self, req: Request, key: str) -> Response:
        _, error = self._auth.authenticate(replace(req, headers={"x-api-key": key}))
        assert error is not None
        return error
