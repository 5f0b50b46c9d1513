"""The forward run's view of the id map: a chunk's links read in one query, the run's own until they are written."""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping
from typing import Any

from sync_ledger import Ledger, Link
from sync_ledger.rows import Journal, echo_link, written_from

SRC = "coperniq"
QBO = "quickbooks"

#: A staged row as a pass reads it: (id, payload, status, attempts).
Staged = tuple[str, dict[str, Any], str, int]


class LinkMap:
    """This run's view of the Coperniq -> QuickBooks links. Read from the ledger a chunk at a time (`prefetch`, before
    the chunk's rows are evaluated; a miss is a point read), plus the links this run made, held until the journal
    has written them (then the ledger answers for them). Bounded memory whatever the id map's size."""

    def __init__(self, ledger: Ledger, journal: Journal, *, dry: bool) -> None:
        self._ledger = ledger
        self._journal = journal
        self._dry = dry  # a dry run writes nothing: what it "made" stays here
        self._read: dict[tuple[str, str], Link | None] = {}
        self._made: dict[tuple[str, str], Link] = {}
        self._made_targets: set[str] = set()
        self._echoes: dict[tuple[str, str], bool] = {}

    def get(self, source_type: str, source_id: str) -> Link | None:
        key = (source_type, str(source_id))
        if key in self._made:
            return self._made[key]
        if key not in self._read:
            self._keep(key, _to_quickbooks(self._ledger.get_link(SRC, source_type, key[1])))
        return self._read[key]

    def __contains__(self, key: tuple[str, str]) -> bool:
        return self.get(*key) is not None

    def prefetch(self, source_type: str, source_ids: Iterable[Any]) -> None:
        """Read these records' links in one query (the ones neither read nor made in this run)."""
        wanted = {str(i) for i in source_ids if i not in (None, "")}
        wanted = {i for i in wanted if (source_type, i) not in self._made and (source_type, i) not in self._read}
        if not wanted:
            return
        found = self._ledger.links_for(SRC, source_type, wanted)
        for sid in wanted:
            self._keep((source_type, sid), _to_quickbooks(found.get(sid)))

    def prefetch_echoes(self, kind: str, source_ids: Iterable[str]) -> None:
        """Which of these Coperniq records the reverse leg wrote (one query for a chunk's echo checks)."""
        wanted = [i for i in source_ids if (kind, i) not in self._echoes]
        if wanted:
            written = self._ledger.links_to(SRC, kind, wanted)
            for sid in wanted:
                self._echoes[(kind, sid)] = written_from(written.get(sid), QBO)
            _bound(self._echoes)

    def echo(self, kind: str, source_id: str) -> bool:
        """Was this Coperniq record written by the reverse leg (from QuickBooks)?"""
        known = self._echoes.get((kind, source_id))
        if known is None:
            return echo_link(self._ledger, SRC, kind, source_id, other=QBO) is not None
        return known

    def add(self, link: Link) -> None:
        """A link this run made, about to be queued in the journal (so every link held before it is queued)."""
        if len(self._made) >= MADE_HELD and not self._dry:
            self._journal.flush()  # the ones held are durable: the ledger answers for them from now on
            for made_key, made in self._made.items():
                self._keep(made_key, made)
            self._made.clear()
            self._made_targets.clear()
        self._made[(link.source_type, link.source_id)] = link
        if link.target_id:
            self._made_targets.add(link.target_id)

    @property
    def targets(self) -> Container[str]:
        """Merge ids some Coperniq record is linked to (`merge_id in links.targets`): never matched to another."""
        return _Targets(self)

    def is_target(self, merge_id: str) -> bool:
        """Is some Coperniq record linked to this Merge id (so it is never matched to another one)?"""
        return merge_id in self._made_targets or self._ledger.is_linked_target(QBO, merge_id)

    def linked_targets(self, target_type: str, merge_ids: Iterable[str]) -> set[str]:
        """Which of these Merge ids some Coperniq record is linked to (one query: a page of QuickBooks' list)."""
        ids = [str(i) for i in merge_ids]
        made = {i for i in ids if i in self._made_targets}
        return made | set(self._ledger.links_to(QBO, target_type, [i for i in ids if i not in made]))

    def is_linked_job(self, qbo_id: str) -> bool:
        """Is some project linked to the QuickBooks job with this Id?"""
        if any(link.target_type == "job" and link.target_remote_id == qbo_id for link in self._made.values()):
            return True
        return self._ledger.get_link_by_remote(QBO, "job", qbo_id) is not None

    def some_projects(self, limit: int) -> list[str]:
        """Ids of up to `limit` linked projects (the ledger's first, then this run's)."""
        ids = [link.source_id for link in self._ledger.links(SRC, "project", limit=limit)]
        ids += [sid for (stype, sid) in self._made if stype == "project"]
        return ids[:limit]

    def _keep(self, key: tuple[str, str], link: Link | None) -> None:
        self._read[key] = link
        _bound(self._read)


class _Targets(Container[str]):
    def __init__(self, links: LinkMap) -> None:
        self._links = links

    def __contains__(self, merge_id: object) -> bool:
        return self._links.is_target(str(merge_id))


#: Links this run made that are held before the journal is flushed and the ledger answers for them.
MADE_HELD = 5000
#: Links (and echo answers) read from the ledger that are kept: a few chunks' worth.
READ_HELD = 6_000


def _to_quickbooks(link: Link | None) -> Link | None:
    """The link if it goes to QuickBooks (a Coperniq record's link to another system is not this leg's)."""
    return link if link is not None and link.target_system == QBO else None


def _bound(cache: dict[Any, Any]) -> None:
    while len(cache) > READ_HELD:
        del cache[next(iter(cache))]


#: The links a stream's rows are evaluated with: (source type, the linked record's id in a row), read per chunk.
LINKS_OF: dict[str, tuple[tuple[str, Callable[[str, Mapping[str, Any]], Any]], ...]] = {
    "projects": (("project", lambda rid, p: rid), ("account", lambda rid, p: p.get("accountId"))),
    "accounts": (("account", lambda rid, p: rid),),
    "invoices": (
        ("invoice", lambda rid, p: rid),
        ("project", lambda rid, p: (p.get("record") or {}).get("id")),
        ("account", lambda rid, p: (p.get("account") or {}).get("id")),
    ),
    "payments": (("payment", lambda rid, p: rid), ("invoice", lambda rid, p: p.get("invoiceId"))),
}
#: Streams whose rows may have been written by the reverse leg (echo checks read per chunk).
ECHO_KIND = {"invoices": "invoice", "payments": "payment"}
