"""QuickBooks Classes and Departments (Locations) of forward invoices, decided by a field of the invoice's project
(`tracking_category_mapping`) and sent as Merge `tracking_categories`.

Where they go (README "Classes and locations"): the Department on the invoice (QuickBooks has none on lines); the
Class on the invoice *and* on each line, because QuickBooks' "Track classes" preference takes it from one place or
the other (one per transaction, or one per row) and ignores the other one. ASSUMPTION: Merge maps the header's
`tracking_categories` to the invoice's ClassRef/DepartmentRef and the line's to its line ClassRef; its QuickBooks
supported fields list `tracking_categories` on POST/PATCH /invoices and `InvoiceLineItem.tracking_categories`.

The company's categories are read once per run (`GET /tracking-categories`, a few dozen rows), only when the
setting is there; every name the setting gives must exist then, or the run stops before writing. Without the
setting nothing is read and no invoice payload changes (so no fingerprint does either).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sync_ledger import fingerprint
from sync_ledger.rows import RowFailure

from .context import DIRECTION, SRC, Context
from .errors import ConfigRefused
from .merge_index import find_ref, ref_index
from .tracking_settings import SETTING, CategoryRule

#: Ledger meta: the fingerprint of the setting the pushed invoices carry (a change wakes them, once).
TRACKING_META = "forward:tracking_categories"


@dataclass(frozen=True)
class InvoiceCategories:
    """The Merge tracking-category ids of one invoice: on the invoice itself and on each of its lines."""

    header: tuple[str, ...]
    lines: tuple[str, ...]

    def apply(self, desired: dict[str, Any]) -> dict[str, Any]:
        """The invoice payload with its categories (sorted ids: the order never makes a change)."""
        lines = [{**line, "tracking_categories": sorted(self.lines)} for line in desired["line_items"]]
        return {**desired, "line_items": lines, "tracking_categories": sorted(self.header)}


NONE = InvoiceCategories((), ())


def field_values(record: Mapping[str, Any], path: str) -> list[str]:
    """The non-empty values of a (dotted) field of a Coperniq record, a list field (trades) as its items."""
    value: Any = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    items = value if isinstance(value, list) else [value]
    found = [str(v).strip() for v in items if v is not None and not isinstance(v, dict | list) and str(v).strip()]
    return list(dict.fromkeys(found))


class CategoryIndex:
    """The company's active categories of each type, by Merge id, QuickBooks Id, name and full name (Parent:Child)."""

    def __init__(self, categories: Sequence[Mapping[str, Any]]) -> None:
        active = [
            c
            for c in categories
            if not c.get("remote_was_deleted") and str(c.get("status") or "ACTIVE").upper() == "ACTIVE"
        ]
        by_id = {str(c["id"]): c for c in active}
        self._refs: dict[str, dict[str, str]] = {}
        self._names: dict[str, list[str]] = {}
        for kind in ("CLASS", "DEPARTMENT"):
            mine = [{**c, "_full": full_name(c, by_id)} for c in active if c.get("category_type") == kind]
            self._refs[kind] = ref_index(mine, ("_full", "name"))
            self._names[kind] = sorted(str(c["_full"]) for c in mine)

    def find(self, category_type: str, name: str) -> str | None:
        return find_ref(self._refs.get(category_type, {}), name)

    def known(self, category_type: str) -> str:
        return ", ".join(self._names.get(category_type, [])) or "none"


def full_name(category: Mapping[str, Any], by_id: Mapping[str, Mapping[str, Any]]) -> str:
    """QuickBooks' FullyQualifiedName of a sub-class or sub-location: its parents' names, colon separated."""
    names, seen = [str(category.get("name") or category["id"])], {str(category["id"])}
    parent = by_id.get(str(category.get("parent_category") or ""))
    while parent is not None and str(parent["id"]) not in seen:
        seen.add(str(parent["id"]))
        names.insert(0, str(parent.get("name") or parent["id"]))
        parent = by_id.get(str(parent.get("parent_category") or ""))
    return ":".join(names)


class TrackingBook:
    """The categories of each invoice. Constructed at the start of the reconcile, before anything is written: with
    the setting it reads the company's categories and refuses a name QuickBooks does not have."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.rules: tuple[CategoryRule, ...] = ctx.s.tracking_category_mapping if ctx.s.invoice_sync else ()
        self.index = CategoryIndex(list(ctx.client.iter_list("/tracking-categories"))) if self.rules else None
        if self.index is not None:
            self._check_settings(self.index)

    @property
    def prefetch(self) -> tuple[str, ...]:
        """The staged streams an invoice chunk needs: its projects, read a chunk at a time (no call per invoice)."""
        return ("projects",) if self.rules else ()

    def _check_settings(self, index: CategoryIndex) -> None:
        unknown = [
            f"{where} = {name!r} (QuickBooks has: {index.known(rule.category_type)})"
            for rule in self.rules
            for where, name in rule.names()
            if index.find(rule.category_type, name) is None
        ]
        if unknown:
            raise ConfigRefused(f"{'; '.join(unknown)}: no such active class or department in QuickBooks")

    def wake_pushed(self) -> None:
        """A changed setting re-evaluates every pushed invoice once (their categories are in their fingerprint, so
        each one whose categories change is PATCHed, the others cost nothing). Unchanged: nothing is written."""
        ctx = self.ctx
        wanted = fingerprint([r.describe() for r in self.rules]) if self.rules else None
        if woken := ctx.wake_on_change(TRACKING_META, wanted, ("invoices",), ("done",)):
            ctx.log.info("%s changed: %d pushed invoice(s) are evaluated again", SETTING, woken)

    def wake_moved(self) -> None:
        """Pushed invoices of projects changed since the last good run are evaluated again: a project moved to
        another workflow (or any field the setting reads) moves its invoices' class. An invoice whose categories
        did not change costs nothing; the lookup is one SQL query over the invoices, and only with the setting."""
        ctx = self.ctx
        if not self.rules or ctx.dry:
            return
        last = ctx.ledger.last_run(direction=DIRECTION, successful=True)
        since = last["finished_at"] if last else None
        if woken := ctx.ledger.requeue_children(SRC, "invoices", "record.id", "projects", since, ("done",)):
            ctx.log.info("%d pushed invoice(s) of changed projects are evaluated again (%s)", woken, SETTING)

    def for_invoice(self, invoice: Mapping[str, Any]) -> InvoiceCategories | None:
        """The categories of an invoice, from its staged project; None without the setting (payload unchanged).
        Raises RowFailure when the project's value maps to nothing QuickBooks has."""
        index = self.index
        if index is None:
            return None
        pid = (invoice.get("record") or {}).get("id")
        project = (self.ctx.ledger.staged(SRC, "projects", str(pid)) if pid is not None else None) or {}
        header: list[str] = []
        lines: list[str] = []
        for rule in self.rules:
            category = self._category(index, rule, project, pid)
            header.append(category)
            if rule.category_type == "CLASS":
                lines.append(category)
        return InvoiceCategories(tuple(header), tuple(lines))

    def _category(self, index: CategoryIndex, rule: CategoryRule, project: Mapping[str, Any], pid: Any) -> str:
        values = field_values(project, rule.field)
        whose = f"project {pid}'s {rule.field}" if pid is not None else "the invoice (no project)"
        kind = rule.category_type.lower()
        name = self._name(rule, values, whose)
        found = index.find(rule.category_type, name)
        if found is None:  # only a name taken from the project itself can be missing: the setting's were checked
            raise RowFailure(
                f"QuickBooks has no active {kind} {name!r} ({whose}; {rule.where} has no `values`): create it in "
                f"QuickBooks or map the value in {rule.where}.values (QuickBooks has: "
                f"{index.known(rule.category_type)}); the invoice is not pushed without it"
            )
        return found

    @staticmethod
    def _name(rule: CategoryRule, values: list[str], whose: str) -> str:
        """The QuickBooks name for the project's value(s): a list field's first value in the setting's order."""
        kind = rule.category_type.lower()
        shown = ", ".join(repr(v) for v in values) or "no value"
        if rule.values is not None:
            hits = {normalized for v in values if (normalized := rule.mapped(v)) is not None}
            ordered = [name for _, name in rule.values if name in hits]
            if ordered:
                return ordered[0]
        elif len(values) == 1:
            return values[0]
        elif len(values) > 1 and rule.default is None:
            raise RowFailure(
                f"{whose} has several values ({shown}) and {rule.where} has no `values` to pick the {kind}: add "
                f"them; the invoice is not pushed without its {kind}"
            )
        if rule.default is not None:
            return rule.default
        listed = "has no entry in " + f"{rule.where}.values" if rule.values is not None else "is empty"
        raise RowFailure(
            f"{whose} ({shown}) {listed} and there is no {rule.where}.default: add it there; the invoice is not "
            f"pushed without its QuickBooks {kind}"
        )
