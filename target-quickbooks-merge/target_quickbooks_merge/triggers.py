"""Trigger decision: has a project reached its workflow's trigger phase, and did it do so after the sync was enabled?

"Reached" comes from the project list alone (sync_ledger.triggers: the current phase is the trigger phase or a
later one). "After the sync was enabled" (backfill off) comes from the phase history when the optional
`project_phase_instances` stream is extracted (exact entry times), else from the target's own snapshot: the first
time this target saw the project at or past the trigger phase. A project seen there by the very first run was
already there when the sync was enabled. Works from staged records, whatever order or run they arrived in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sync_ledger.triggers import (
    TriggerRule,
    TriggerSpec,
    as_int,
    current_phase,
    normalize_name,
    resolve_rules,
    rule_for,
)

from .settings import parse_dt

#: Ledger staging stream holding, per project, each (workflow, phase) this target has seen it at and when.
SNAPSHOT_STREAM = "project_phases_seen"


@dataclass
class TriggerIndex:
    """Resolved rules plus the earliest start of any trigger-looking phase per project (when history is staged)."""

    rules: list[TriggerRule]
    warnings: list[str] = field(default_factory=list)
    # project id -> list of (template_id, normalized name, startedAt)
    starts: dict[str, list[tuple[int | None, str, datetime]]] = field(default_factory=dict)
    #: Projects counted as at/past their trigger phase this run (for the "nothing reached it" warning), per rule.
    reached_count: dict[int, int] = field(default_factory=dict)

    @classmethod
    def build(cls, specs: Iterable[TriggerSpec], workflows: Iterable[Mapping[str, Any]]) -> TriggerIndex:
        rules, warnings = resolve_rules(specs, workflows)
        return cls(rules, warnings)

    def wants_phase(self, template_id: Any, name: Any) -> bool:
        return any(r.matches_phase(template_id, name) for r in self.rules)

    def add_instance(self, instance: Mapping[str, Any]) -> None:
        """Keep only started instances of phases some rule cares about (bounded memory on 100k projects)."""
        started = instance.get("startedAt")
        if not started or not self.wants_phase(instance.get("templateId"), instance.get("name")):
            return
        try:
            when = parse_dt(str(started))
        except ValueError:
            return
        pid = str(instance.get("projectId"))
        self.starts.setdefault(pid, []).append(
            (as_int(instance.get("templateId")), normalize_name(instance.get("name")), when)
        )

    def rule_for(self, project: Mapping[str, Any]) -> TriggerRule | None:
        return rule_for(self.rules, project)

    def history_entered_at(self, project: Mapping[str, Any], rule: TriggerRule) -> datetime | None:
        """When the phase history says the project first entered its trigger phase (None: no such history)."""
        times = [
            when for tid, name, when in self.starts.get(str(project.get("id")), []) if rule.matches_phase(tid, name)
        ]
        return min(times) if times else None

    def count_reached(self, rule: TriggerRule) -> None:
        self.reached_count[id(rule)] = self.reached_count.get(id(rule), 0) + 1

    def reached_any(self, rule: TriggerRule) -> bool:
        return self.reached_count.get(id(rule), 0) > 0


def phase_key(project: Mapping[str, Any]) -> list[Any] | None:
    """[workflowId, templateId, normalized phase name] of the project's current phase (None: it has none)."""
    phase, template_id, _ = current_phase(project)
    if not phase:
        return None
    return [as_int(project.get("workflowId")), as_int(template_id), normalize_name(phase.get("name"))]


def observe(snapshot: Mapping[str, Any] | None, project: Mapping[str, Any], seen_at: str) -> dict[str, Any] | None:
    """The snapshot with the project's current phase added (first sighting kept); None when nothing is new."""
    key = phase_key(project)
    if key is None:
        return None
    seen = list((snapshot or {}).get("seen") or [])
    if any(entry[:3] == key for entry in seen):
        return None
    return {"seen": [*seen, [*key, seen_at]]}


def first_reached_seen(
    snapshot: Mapping[str, Any] | None, project: Mapping[str, Any], rule: TriggerRule
) -> datetime | None:
    """The first time this target saw the project, in its current workflow, at or past the rule's trigger phase."""
    workflow = as_int(project.get("workflowId"))
    times = [
        parse_dt(str(at))
        for wf, tid, name, at in (snapshot or {}).get("seen") or []
        if (wf == workflow or workflow is None) and rule.reached(tid, name)
    ]
    return min(times) if times else None
