"""What the forward pass reads from Merge once per run and looks up many times: contacts (for matching and
DisplayName collisions), items, the AR invoice list, the deposit account."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sync_ledger import ApiError, Ledger
from sync_ledger.rows import RowFailure

from .mapping import name_candidates, normalize_name
from .merge_client import MergeClient, WriteError
from .settings import Settings

#: Names tried when matching: the base name and the first suffixed names this sync picks on a collision.
OWN_NAME_TRIES = 6
#: A rename or create refused as a duplicate name moves on to the next suffix at most this many times.
NAME_RETRIES = 5


class ContactIndex:
    """Existing QBO customers/jobs (Merge Contacts), fetched once per run and only when a match or a collision
    check needs them; names reserved by this run's planned creates are held here too."""

    def __init__(self, client: MergeClient, log: Any) -> None:
        self.client = client
        self.log = log
        self._by_name: dict[str, list[dict[str, Any]]] | None = None
        self._reserved: set[str] = set()

    @property
    def by_name(self) -> dict[str, list[dict[str, Any]]]:
        if self._by_name is None:
            self._by_name = defaultdict(list)
            count = 0
            for contact in self.client.iter_list("/contacts", {"expand": "addresses,phone_numbers"}):
                if not contact.get("remote_was_deleted"):
                    count += bool(contact.get("id"))
                    self.add(contact)
            self.log.info("Prefetched %d QuickBooks contacts for matching", count)
        return self._by_name

    def add(self, contact: dict[str, Any]) -> None:
        key = normalize_name(contact.get("name"))
        if key:
            self.by_name[key].append(contact)

    def reserve(self, name: str) -> None:
        """Hold a DisplayName for a planned create, so the next record of the batch picks another. The record it
        creates is linked, so it is never a match candidate: the name's key is all that is kept of it (a set, not
        an entry of `by_name`: a first sync reserves one per client and job)."""
        key = normalize_name(name)
        if key:
            self._reserved.add(key)

    def taken(self, key: str) -> bool:
        """Whether a normalized DisplayName is held in QuickBooks or by a create of this run."""
        return key in self._reserved or key in self.by_name


class NameBook:
    """DisplayNames: the one this sync chose for a record (a suffixed one after a collision) and free ones."""

    def __init__(self, ledger: Ledger, contacts: ContactIndex, *, dry: bool) -> None:
        self.ledger = ledger
        self.contacts = contacts
        self.dry = dry

    def stored(self, kind: str, source_id: str, base: str) -> str:
        """The DisplayName we chose earlier, if the base is unchanged."""
        raw = self.ledger.get_meta(f"qbo_name:{kind}:{source_id}")
        if raw:
            data = json.loads(raw)
            if data.get("base") == base:
                return str(data["name"])
        return base

    def remember(self, kind: str, source_id: str, base: str, name: str) -> None:
        if self.dry:
            return
        key = f"qbo_name:{kind}:{source_id}"
        if name != base:
            self.ledger.set_meta(key, json.dumps({"base": base, "name": name}))
        elif self.ledger.get_meta(key):
            self.ledger.set_meta(key, None)

    def own(self, kind: str, source_id: str, base: str, match: Mapping[str, Any]) -> str:
        """A match under one of our suffixed names keeps that name (remembered, as if we had just chosen it)."""
        name = str(match.get("name") or base)
        if normalize_name(name) != normalize_name(base):
            self.remember(kind, source_id, base, name)
            return name
        return base

    def free(self, base: str, key: str, exclude: set[str] | None = None) -> str:
        for candidate in name_candidates(base, key):
            if not self.contacts.taken(normalize_name(candidate)) and candidate not in (exclude or set()):
                return candidate
        raise RowFailure(f"could not find a free QuickBooks DisplayName for {base!r}")

    def next_after(self, exc: Exception, name: str, base: str, key: str, tried: set[str]) -> str | None:
        """After QuickBooks refused `name` as a duplicate (6240: a vendor/employee Merge does not list holds it), the
        next suffix to try; None if `exc` is no such refusal or 5 names were tried. RowFailure: no free name left."""
        if not (isinstance(exc, WriteError) and exc.duplicate_name and len(tried) < NAME_RETRIES):
            return None
        tried.add(name)
        return self.free(base, key, tried)

    def candidates(self, base: str, key: str, linked: Container[str]) -> Iterator[dict[str, Any]]:
        """Unlinked, active Merge customers named `base` or one of the suffixed names this sync chooses on a
        collision (tried first: a name like "Base (#1042)" was made by us)."""
        index = self.contacts.by_name
        names = list(itertools.islice(name_candidates(base, key), OWN_NAME_TRIES))
        for name in [*names[1:], names[0]]:
            for candidate in index.get(normalize_name(name), []):
                if not candidate.get("id") or str(candidate.get("id")) in linked:
                    continue  # a contact without an id, or the twin of another Coperniq record
                if not candidate.get("is_customer") or str(candidate.get("status") or "ACTIVE") == "ARCHIVED":
                    continue  # a vendor/employee holding the name, or an inactive customer: never linked
                yield candidate


def ref_index(records: Iterable[Mapping[str, Any]], names: Sequence[str] = ("name",)) -> dict[str, str]:
    """Merge ids by `id:<Merge id>`, `id:<QuickBooks Id>` and `name:<normalized name>` (the first one wins): the
    ways a setting names a QuickBooks record (an item, a tax code). Read with `find_ref`."""
    index: dict[str, str] = {}
    for record in records:
        mid = str(record["id"])
        index[f"id:{mid}"] = mid
        if record.get("remote_id"):
            index.setdefault(f"id:{record['remote_id']}", mid)
        for field in names:
            if record.get(field):
                index.setdefault(f"name:{normalize_name(str(record[field]))}", mid)
    return index


def find_ref(index: Mapping[str, str], ref: str) -> str | None:
    """The Merge id a setting's value names in a `ref_index` (a Merge id, a QuickBooks Id or a name)."""
    return index.get(f"id:{ref}") or index.get(f"name:{normalize_name(ref)}")


class ItemIndex:
    """QuickBooks items by Merge id, QBO Id and name; a Coperniq line's item through item_mapping/default_item."""

    def __init__(self, client: MergeClient, settings: Settings) -> None:
        self.client = client
        self.s = settings
        self._index: dict[str, str] | None = None

    def _items(self) -> dict[str, str]:
        if self._index is None:
            self._index = ref_index(i for i in self.client.settings_list("/items") if not i.get("remote_was_deleted"))
        return self._index

    def lookup(self, ref: str) -> str | None:
        return find_ref(self._items(), ref)

    def for_line(self, line: Mapping[str, Any]) -> str:
        catalog = line.get("catalogItem") or {}
        cid = line.get("catalogItemId") or catalog.get("id")
        cname = catalog.get("name")
        mapping = self.s.item_mapping
        for key in (str(cid) if cid is not None else None, cname):
            if key and key in mapping:
                found = self.lookup(mapping[key])
                if found:
                    return found
                raise RowFailure(
                    f"item_mapping maps catalog item {key!r} to {mapping[key]!r}, which is not an item in QuickBooks"
                )
        if cname and (found := self.lookup(cname)):
            return found  # same name in QuickBooks
        if self.s.default_item:
            found = self.lookup(self.s.default_item)
            if found:
                return found
            raise RowFailure(f"default_item {self.s.default_item!r} is not an item in QuickBooks")
        raise RowFailure(
            f"no QuickBooks item for catalog item {cname!r} (id {cid}): add it to item_mapping or set default_item"
        )


#: What the invoice list keeps of each invoice: enough to choose a candidate (the list grows with QuickBooks'
#: history, so not whole models; a chosen one is read whole with `full`).
LISTED_FIELDS = ("id", "number", "contact", "remote_id", "remote_was_deleted")


class InvoiceIndex:
    """QuickBooks AR invoices by number. Each lookup also reads the next page of the invoice list; once the list is
    complete, lookups are free. So a run pays at most twice the cheaper of "one GET per new invoice" and "read the
    whole list", without knowing in advance how many invoices QuickBooks holds. Listed invoices keep only
    LISTED_FIELDS; `full` reads the one a rule goes on with."""

    def __init__(self, client: MergeClient, log: Any, linked: Callable[[list[str]], Container[str]]) -> None:
        self.client = client
        self.log = log
        self._linked = linked  # which listed invoices are already some Coperniq invoice's: never candidates
        self._pages: Iterator[dict[str, Any]] | None = None
        self._by_number: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.complete = False
        self._broken = False

    def by_number(self, number: str) -> list[dict[str, Any]]:
        if self._pages is None:
            self._pages = self.client.iter_pages("/invoices", {"type": "ACCOUNTS_RECEIVABLE"})
        if not self.complete and not self._broken:
            try:
                page = next(self._pages, None)
            except ApiError as exc:  # the list read failed (a cursor can expire in a long run): look up one by one
                self._broken = True
                self.log.warning(
                    "Reading the QuickBooks invoice list failed (%s); invoices are looked up by number "
                    "one by one for the rest of the run",
                    exc,
                )
                return self.client.invoices_by_number(number)
            results = [
                inv
                for inv in (page or {}).get("results") or []
                if inv.get("number") not in (None, "") and not inv.get("remote_was_deleted")
            ]
            # Invoices already linked (a first run's own, by the end of it) are never matched again: keeping them
            # would make the index grow with the sync's own history instead of the bookkeeper's invoices.
            linked = self._linked([str(inv["id"]) for inv in results]) if results else set()
            for inv in results:
                if str(inv["id"]) not in linked:
                    self._by_number[str(inv["number"])].append({k: inv.get(k) for k in LISTED_FIELDS})
            if page is None or not page.get("next"):
                self.complete = True
                self.log.info("Read the QuickBooks invoice list: %d not linked to Coperniq, kept to match", self.held)
        if self.complete:
            return list(self._by_number.get(str(number), []))
        return self.client.invoices_by_number(number)

    @property
    def held(self) -> int:
        """Listed invoices kept for matching (the bookkeeper's own, and any not linked yet)."""
        return sum(map(len, self._by_number.values()))

    def full(self, invoice: dict[str, Any]) -> dict[str, Any]:
        """The whole model of an invoice from `by_number`/`listed` (one GET if the list kept only its keys)."""
        if set(invoice) <= set(LISTED_FIELDS) and invoice.get("id"):
            return self.client.invoice(str(invoice["id"])) or invoice
        return invoice

    def listed(self, number: str) -> list[dict[str, Any]]:
        """Invoices with this number in the list read so far (free; complete only once `complete`)."""
        return list(self._by_number.get(str(number), []))


def deposit_account_id(client: MergeClient, wanted: str) -> str:
    """The Merge id of payment_account (by id, QBO Id or name)."""
    found = find_ref(ref_index(client.settings_list("/accounts")), wanted)
    if found:
        return found
    raise RowFailure(f"payment_account {wanted!r} is not an account in QuickBooks")


def qbo_id_of(client: MergeClient, path: str, wanted: str, setting: str) -> str:
    """The QuickBooks Id of the record (an account, an item) a setting names by Merge id, QBO Id or name; raises
    ConfigRefused naming the setting when QuickBooks has none (passthrough bodies need QuickBooks' own Ids)."""
    from .errors import ConfigRefused

    records = [r for r in client.settings_list(path) if not r.get("remote_was_deleted")]
    found = named_record(records, wanted)
    if found is None:
        kind = path.strip("/").rstrip("s")
        raise ConfigRefused(f"{setting} {wanted!r} is not an {kind} in QuickBooks")
    return str(found["remote_id"])


def named_record(records: Sequence[Mapping[str, Any]], wanted: str) -> Mapping[str, Any] | None:
    """The record of `records` (live Merge models) a setting names by Merge id, QBO Id or name, if QuickBooks has
    it (a QuickBooks Id known)."""
    merge_id = find_ref(ref_index(records), wanted)
    found = next((r for r in records if str(r["id"]) == merge_id), None)
    return found if found is not None and found.get("remote_id") else None
