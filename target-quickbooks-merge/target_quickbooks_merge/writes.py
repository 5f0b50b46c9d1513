"""A Merge create of an invoice or a payment, planned under a durable intent and a deterministic Idempotency-Key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sync_ledger import Link
from sync_ledger.writer import PlannedWrite

from .context import Context, idempotency_key, link_for
from .merge_client import WriteResult


def create_model(
    ctx: Context,
    kind: str,
    source_id: str,
    desired: dict[str, Any],
    fp: str,
    intent: Mapping[str, Any] | None,
    done: Callable[[Link, WriteResult], None],
    find: Callable[[], dict[str, Any] | None],
) -> None:
    """Neither a retry nor a crash can create it twice: `find` (its natural-key lookup) covers a lost answer when
    Merge does not honour the key. It is sent with its batch; `done` then logs it, after its link is queued."""
    intent_key = f"forward:{kind}:{source_id}"
    ikey = idempotency_key(kind, source_id, fp)

    def send() -> WriteResult:
        if ctx.dry:  # dry runs send nothing and run on this thread
            return WriteResult({"id": ctx.fake_id(kind)})
        return ctx.client.create(f"{kind}s", desired, idempotency_key=ikey, find_existing=find)

    def finish(res: WriteResult) -> None:
        link = link_for(kind, source_id, kind, res.model, fp)
        ctx.commit_create(link, intent_key)
        done(link, res)

    # stream = the Merge model path (invoices, payments), as the integration log names it
    ctx.writer.plan(
        PlannedWrite(
            f"{kind}s", source_id, intent_key, {"kind": kind, **(intent or {}), "idempotency_key": ikey}, send, finish
        )
    )
