"""Incremental list reads (`updated_after`): the lookback window, the overlap filter, resuming after a quota stop."""

from __future__ import annotations

import sys
import typing as t
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from sync_ledger.incremental import RECENT_KEY, LookbackStreamMixin, parse_timestamp
from tap_coperniq.client import CoperniqStream, format_timestamp
from tap_coperniq.pagination import CoperniqPaginator

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    import requests
    from singer_sdk.helpers.types import Context
    from singer_sdk.pagination import PageNumberPaginator
    from singer_sdk.streams.rest import HTTPRequest, PageContext

#: Seconds Coperniq's `Date` header may run ahead of the clock that stamps `updatedAt` (setting
#: `clock_skew_allowance`): a window anchored at a read's start begins this much earlier (ASSUMPTION 15).
DEFAULT_CLOCK_SKEW_ALLOWANCE = 120


def coperniq_time_of(response: requests.Response) -> datetime | None:
    """When Coperniq began answering, on the clock behind its `Date` header (at most `clock_skew_allowance` ahead of
    the one that stamps `updatedAt`, ASSUMPTION 15): the header less the time the exchange took and its 1 s
    resolution, and never later than this machine's clock says. None without a usable `Date`."""
    raw = response.headers.get("Date")
    if not raw:
        return None
    try:
        served = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if served.tzinfo is None:
        served = served.replace(tzinfo=UTC)
    return min(served, datetime.now(UTC)) - response.elapsed - timedelta(seconds=1)


class IncrementalStream(LookbackStreamMixin, CoperniqStream):
    """List endpoint with `updated_after`: bookmark max(updatedAt); the API order is unknown, so unsorted.

    The lookback overlap would re-emit every row updated just before the bookmark on every run, and for
    projects/invoices each costs a detail call against the daily cap: the overlap filter (sync_ledger)
    drops the rows already emitted with the same updatedAt.

    The window is `lookback_window` seconds before the bookmark, or `lookback_window + clock_skew_allowance`
    seconds before the start of the previous complete read (`read_started_at`, from Coperniq's `Date` header) when
    that is later. The start is on the `Date` clock, which may run ahead of the clock that stamps `updatedAt`: less
    the allowance it is not after the read's start on the `updatedAt` clock, and a row stamped more than the
    lookback before that was visible when that read began (the lag the window allows for had passed), so that read
    saw it. After a quiet spell or a bulk update the rows just before the bookmark are read once more, not on
    every run. Rows remembered for the overlap filter below the next window are dropped (no read asks for them).

    A quota stop mid-read keeps `resume` in the state: the page to go on from, the `updated_after` of that read
    and its start time. The next run continues there, and caps its bookmark at the first read's start, so a row
    that changed on an already-read page while the tap waited is read again by the run after.
    """

    replication_key = "updatedAt"
    is_sorted = False
    RESUME_KEY = "resume"
    READ_STARTED_KEY = "read_started_at"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._page: int | None = None
        self._read_from: str | None = None
        self._started_at = datetime.now(UTC)
        self._first_page_read = False
        self._read_started: datetime | None = None  # Coperniq's clock at this read's first page

    @property
    def resume(self) -> dict[str, t.Any] | None:
        value = self.stream_state.get(self.RESUME_KEY)
        return value if isinstance(value, dict) else None

    def full_read(self) -> bool:
        """Read the whole list, ignoring updated_after (the projects sweep)."""
        return False

    @property
    def clock_skew_allowance(self) -> int:
        """The `clock_skew_allowance` setting in seconds (0: the `Date` header is the `updatedAt` clock)."""
        value = self.config.get("clock_skew_allowance")
        return DEFAULT_CLOCK_SKEW_ALLOWANCE if value is None else max(0, int(value))

    def window_after(self, read_started: str) -> datetime:
        """The earliest `updatedAt` the run after a read that began at `read_started` (the `Date` clock) asks for."""
        return parse_timestamp(read_started) - timedelta(seconds=self.lookback + self.clock_skew_allowance)

    @override
    def read_from(self, context: object) -> datetime | None:
        """The mixin's bookmark - lookback, or `window_after` the previous read's start when that is later."""
        start = super().read_from(context)
        previous = self.stream_state.get(self.READ_STARTED_KEY)
        if start is None or not previous or self.lookback <= 0:
            return start
        if not self.get_context_state(context).get("replication_key_value"):  # type: ignore[arg-type]
            return start
        return max(start, self.window_after(str(previous)))

    @override
    def get_new_paginator(self) -> PageNumberPaginator | None:
        paginator = super().get_new_paginator()
        if paginator is not None and (resume := self.resume) is not None:
            paginator = CoperniqPaginator(int(resume.get("page") or 1), self.page_size, self.records_jsonpath)
        return paginator

    @override
    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        request = super().get_http_request(page=page)
        self._page = page.next_page_token
        resume = self.resume
        if resume is not None:
            after = resume.get("from")
        elif self.full_read():
            after = None
        else:
            start = self.read_from(page.stream_context)
            after = None if start is None else format_timestamp(start)
        self._read_from = after
        if after is not None:
            request.params["updated_after"] = after
        return request

    @override
    def get_replication_key_signpost(self, context: Context | None = None) -> t.Any:
        signpost = super().get_replication_key_signpost(context)
        resume = self.resume
        if resume is not None and resume.get("started_at") and signpost is not None:
            return min(signpost, parse_timestamp(str(resume["started_at"])))
        return signpost

    @override
    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        if not self._first_page_read:  # the first page only: a later one is no start of the read
            self._first_page_read = True
            self._read_started = coperniq_time_of(response)
        return super().parse_response(response)

    @override
    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        # A sweep emits every row, even one with the updatedAt emitted before: a phase may change silently.
        keep = self.keep_row(row, drop_unchanged=not self.full_read())
        return super().post_process(row, context) if keep else None

    @override
    def read_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        if (resume := self.resume) is not None and resume.get("max_seen"):
            # The rows read before the stop count towards the bookmark as if read now.
            markers = self.stream_state.setdefault("progress_markers", {})
            markers.update({"replication_key": self.replication_key, "replication_key_value": resume["max_seen"]})
        yield from super().read_records(context)
        self.remember_overlap()
        self.remember_read_start(resume)
        self.on_complete_read()
        self.stream_state.pop(self.RESUME_KEY, None)

    def _read_start(self, resume: dict[str, t.Any] | None) -> str | None:
        """This read's start (Coperniq's clock); for a resumed read that of the read the quota stopped."""
        if resume is not None:
            value = resume.get(self.READ_STARTED_KEY)
            return str(value) if value else None
        return None if self._read_started is None else self._read_started.isoformat()

    def remember_read_start(self, resume: dict[str, t.Any] | None) -> None:
        """After a complete read: keep its start for the next run's window; forget overlap rows below that window."""
        state = self.stream_state
        started = self._read_start(resume)
        if started is None:  # no Date header (or a state from before): the next window is bookmark - lookback
            state.pop(self.READ_STARTED_KEY, None)
            return
        state[self.READ_STARTED_KEY] = started
        recent = state.get(RECENT_KEY)
        if self.lookback <= 0 or not isinstance(recent, dict):
            return
        floor = self.window_after(started)
        keep = {k: v for k, v in recent.items() if parse_timestamp(str(v)) >= floor}
        if keep:
            state[RECENT_KEY] = keep
        else:
            state.pop(RECENT_KEY, None)

    def on_complete_read(self) -> None:
        """After a read that reached the end of the list."""

    @override
    def on_quota_stop(self, context: Context | None) -> None:
        state = self.stream_state
        previous = self.resume or {}
        seen = [
            v
            for v in (previous.get("max_seen"), (state.get("progress_markers") or {}).get("replication_key_value"))
            if v
        ]
        state[self.RESUME_KEY] = {
            "page": self._page or 1,
            "from": self._read_from,
            "full": previous.get("full", self.full_read()),
            "started_at": previous.get("started_at") or self._started_at.isoformat(),
            "max_seen": max(seen) if seen else None,
            self.READ_STARTED_KEY: self._read_start(self.resume),
        }
        # Not finished: the bookmark must not move to the newest row read so far (rows on unread pages are older).
        state.pop("progress_markers", None)
        state.pop("replication_key_signpost", None)
        self.remember_overlap()
        self.logger.info("%s: stopped at page %s; the next run resumes there", self.name, self._page)
