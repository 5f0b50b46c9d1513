"""Coperniq's `page`/`page_size` paging and the one parse of a response body that paging and parsing share."""

from __future__ import annotations

import decimal
import json
import sys
import typing as t

from singer_sdk.helpers.jsonpath import extract_jsonpath
from singer_sdk.pagination import PageNumberPaginator

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if t.TYPE_CHECKING:
    import requests

MAX_PAGE_SIZE = 100  # Coperniq rejects/clamps anything larger
_BODY_ATTR = "_coperniq_body"


def response_body(response: requests.Response) -> t.Any:
    """Parse a response once (paginator and parser both need it); floats become Decimal, money stays exact."""
    body = getattr(response, _BODY_ATTR, None)
    if body is None:
        body = json.loads(response.content or b"null", parse_float=decimal.Decimal) if response.content else None
        setattr(response, _BODY_ATTR, body)
    return body


class CoperniqPaginator(PageNumberPaginator):
    """`page`/`page_size` paging for both list shapes.

    Bare arrays have no has-more flag, so a short page ends the list. `{items, has_more}` (invoices) is
    trusted as is. If a page starts with the same id as the previous one, the endpoint ignores `page`
    (the spec lists no paging params for /workflows and /catalog-items), so stop instead of looping.
    """

    def __init__(self, start_value: int, page_size: int, records_jsonpath: str) -> None:
        super().__init__(start_value)
        self.page_size = page_size
        self.records_jsonpath = records_jsonpath
        self._previous_first_id: t.Any = None

    @override
    def has_more(self, response: requests.Response) -> bool:
        body = response_body(response)
        if isinstance(body, dict) and "has_more" in body:
            return bool(body["has_more"])
        rows = body if isinstance(body, list) else list(extract_jsonpath(self.records_jsonpath, body))
        if len(rows) < self.page_size:
            return False
        first_id = rows[0].get("id") if isinstance(rows[0], dict) else None
        if first_id is not None and first_id == self._previous_first_id:
            return False
        self._previous_first_id = first_id
        return True
