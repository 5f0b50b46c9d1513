"""The `tracking_category_mapping` setting: which Coperniq project field decides an invoice's QuickBooks Class and
Department (Location in QuickBooks' UI), its schema and its validation.

Why a setting of its own and not item_mapping: a bookkeeper reports income by class or location per line of
business or branch, which Coperniq holds on the project (its workflow, its trades, a custom field), not per item.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from singer_sdk import typing as th

from sync_ledger.triggers import normalize_name

SETTING = "tracking_category_mapping"
#: The setting's keys and the Merge `category_type` each names; `location` is QuickBooks' UI name of Department.
KINDS = {"class": "CLASS", "department": "DEPARTMENT", "location": "DEPARTMENT"}
RULE_KEYS = ("field", "values", "default")

_RULE = th.ObjectType(
    th.Property("field", th.StringType, description="Coperniq project field (dotted path: custom.branch)."),
    th.Property(
        "values",
        th.ObjectType(additional_properties=th.StringType),
        description="Field value -> QuickBooks name; without it the field's value is the QuickBooks name.",
    ),
    th.Property("default", th.StringType, description="QuickBooks name for a value `values` does not list."),
)

TRACKING_PROPERTIES = (
    th.Property(
        SETTING,
        th.ObjectType(
            th.Property("class", _RULE),
            th.Property("department", _RULE),
            th.Property("location", _RULE),
        ),
        description="QuickBooks Class and/or Department (Location) of each invoice, from a field of its Coperniq "
        'project: {"class": {"field": "workflowName", "values": {"Residential Solar": "Solar"}, "default": '
        '"Other"}, "department": {"field": "trades"}}. Without `values` the field\'s value is the QuickBooks '
        "name. An invoice whose project maps to nothing fails with the reason; it is never pushed without it.",
    ),
)


@dataclass(frozen=True)
class CategoryRule:
    """How one kind of QuickBooks tracking category (CLASS or DEPARTMENT) is chosen for an invoice."""

    key: str  # the setting's key (class, department or location), for messages
    category_type: str  # Merge's category_type: CLASS or DEPARTMENT
    field: str  # dotted path into the Coperniq project
    values: tuple[tuple[str, str], ...] | None  # (Coperniq value, QuickBooks name) in the setting's order
    default: str | None

    @property
    def where(self) -> str:
        return f"{SETTING}.{self.key}"

    def mapped(self, value: str) -> str | None:
        """The QuickBooks name `values` gives a Coperniq value (compared normalized: case and punctuation)."""
        key = normalize_name(value)
        return next((name for source, name in self.values or () if normalize_name(source) == key), None)

    def names(self) -> list[tuple[str, str]]:
        """(where in the setting, QuickBooks name) of every name the setting itself gives, checked at start."""
        named = [(f"{self.where}.values[{source!r}]", name) for source, name in self.values or ()]
        return named + ([(f"{self.where}.default", self.default)] if self.default else [])

    def describe(self) -> list[Any]:
        """What the setting says, for the fingerprint that wakes pushed invoices when it changes."""
        return [self.category_type, self.field, [list(v) for v in self.values or ()], self.default]


def parse_tracking_settings(config: Mapping[str, Any], errors: list[str]) -> tuple[CategoryRule, ...]:
    """The rules of `tracking_category_mapping` (none when absent); what is wrong goes to `errors`, naming it."""
    raw = config.get(SETTING)
    if raw in (None, {}):
        return ()
    if not isinstance(raw, Mapping):
        errors.append(f"{SETTING}: must be an object {{class: {{field, values, default}}, department: {{...}}}}")
        return ()
    rules: list[CategoryRule] = []
    for key, spec in raw.items():
        kind = KINDS.get(str(key).strip().lower())
        if kind is None:
            errors.append(f"{SETTING}: unknown key {key!r} (use class and/or department, or location)")
            continue
        rule = _parse_rule(str(key).strip().lower(), kind, spec, errors)
        if rule is not None:
            rules.append(rule)
    types = [r.category_type for r in rules]
    if len(types) != len(set(types)):
        errors.append(f"{SETTING}: department and location are the same QuickBooks category; give one of them")
    return tuple(rules)


def _parse_rule(key: str, kind: str, spec: Any, errors: list[str]) -> CategoryRule | None:
    where = f"{SETTING}.{key}"
    if not isinstance(spec, Mapping):
        errors.append(f"{where}: must be an object {{field: <project field>, values: {{...}}, default: <name>}}")
        return None
    unknown = sorted(str(k) for k in spec if k not in RULE_KEYS)
    if unknown:
        errors.append(f"{where}: unknown key(s) {', '.join(unknown)} (use {', '.join(RULE_KEYS)})")
    field = spec.get("field")
    if not isinstance(field, str) or not field.strip() or any(not part for part in field.strip().split(".")):
        errors.append(f"{where}.field: the Coperniq project field to read (e.g. workflowName, trades, custom.x)")
        return None
    values = spec.get("values")
    pairs: tuple[tuple[str, str], ...] | None = None
    if values is not None:
        if not isinstance(values, Mapping) or not all(_name(v) for v in values.values()):
            errors.append(f"{where}.values: must be an object {{coperniq value: quickbooks name}}")
            return None
        pairs = tuple((str(k).strip(), str(v).strip()) for k, v in values.items())
        seen: dict[str, str] = {}
        for source, name in pairs:
            other = seen.setdefault(normalize_name(source), name)
            if other != name:
                errors.append(f"{where}.values: {source!r} is listed twice (case or punctuation aside)")
    default = spec.get("default")
    if default is not None and not _name(default):
        errors.append(f"{where}.default: must be a QuickBooks {kind.lower()} name")
        return None
    return CategoryRule(key, kind, field.strip(), pairs, str(default).strip() if default is not None else None)


def _name(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and bool(str(value).strip())
