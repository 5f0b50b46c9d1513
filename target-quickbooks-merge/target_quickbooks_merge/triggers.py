"""Trigger decision: did a project enter its workflow's configured phase (and when)?

Works from staged snapshots (workflows, project_phase_instances, projects), so it does not matter in which order or
in which run those records arrived.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .mapping import normalize_name
from .settings import TriggerSpec, parse_dt


def _as_int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def current_phase(project: Mapping[str, Any]) -> tuple[Mapping[str, Any], Any]:
    """The project's current phase and its template id. A Workflows 1.0 project has a `stage` instead, whose id
    is not a phase template id: it matches a trigger by name only."""
    phase = project.get("phase") or {}
    if phase:
        return phase, phase.get("templateId")
    return project.get("stage") or {}, None


@dataclass
class TriggerRule:
    """A configured trigger resolved against the workflows stream (ids when known, names as fallback)."""

    spec: TriggerSpec
    workflow_id: int | None = None
    workflow_name: str = ""       # normalized
    phase_id: int | None = None
    phase_name: str = ""          # normalized
    phase_label: str = ""         # for messages
    entered: int = 0              # projects that entered the phase (for the "never entered" warning)

    def matches_project(self, project: Mapping[str, Any]) -> bool:
        if self.workflow_id is not None and _as_int(project.get("workflowId")) == self.workflow_id:
            return True
        return bool(self.workflow_name) and normalize_name(project.get("workflowName")) == self.workflow_name

    def matches_phase(self, template_id: Any, name: Any) -> bool:
        if self.phase_id is not None and _as_int(template_id) == self.phase_id:
            return True
        return bool(self.phase_name) and normalize_name(name) == self.phase_name


@dataclass
class TriggerIndex:
    """Resolved rules plus the earliest start of any trigger-looking phase per project."""

    rules: list[TriggerRule]
    warnings: list[str] = field(default_factory=list)
    # project id -> list of (template_id, normalized name, startedAt)
    starts: dict[str, list[tuple[int | None, str, datetime]]] = field(default_factory=dict)

    @classmethod
    def build(cls, specs: Iterable[TriggerSpec], workflows: Iterable[Mapping[str, Any]]) -> TriggerIndex:
        wf_list = list(workflows)
        rules: list[TriggerRule] = []
        warnings: list[str] = []
        for spec in specs:
            wf_id = _as_int(spec.workflow)
            wf = next((w for w in wf_list if wf_id is not None and _as_int(w.get("id")) == wf_id), None)
            if wf is None:
                wf = next((w for w in wf_list if normalize_name(w.get("name")) == normalize_name(str(spec.workflow))),
                          None)
            rule = TriggerRule(spec)
            if wf is not None:
                rule.workflow_id = _as_int(wf.get("id"))
                rule.workflow_name = normalize_name(wf.get("name"))
                phases = wf.get("phases") or []
                ph_id = _as_int(spec.phase)
                phase = next((p for p in phases if ph_id is not None and _as_int(p.get("id")) == ph_id), None)
                if phase is None:
                    phase = next((p for p in phases if normalize_name(p.get("name")) == normalize_name(str(spec.phase))),
                                 None)
                if phase is not None:
                    rule.phase_id = _as_int(phase.get("id"))
                    rule.phase_name = normalize_name(phase.get("name"))
                    rule.phase_label = str(phase.get("name"))
                else:
                    rule.phase_id, rule.phase_name, rule.phase_label = ph_id, normalize_name(str(spec.phase)), str(spec.phase)
                    names = ", ".join(str(p.get("name")) for p in phases) or "none"
                    warnings.append(f"trigger_phases: phase {spec.phase!r} matches no phase of workflow "
                                    f"{wf.get('name')!r} (its phases: {names}); no project of it will sync")
            else:
                rule.workflow_id = wf_id
                rule.workflow_name = "" if wf_id is not None else normalize_name(str(spec.workflow))
                rule.phase_id = _as_int(spec.phase)
                rule.phase_name = normalize_name(str(spec.phase))
                rule.phase_label = str(spec.phase)
                if wf_list:
                    known = ", ".join(str(w.get("name")) for w in wf_list)
                    warnings.append(f"trigger_phases: workflow {spec.workflow!r} matches no workflow in the "
                                    f"workflows stream (known: {known}); no project of it will sync")
            rules.append(rule)
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
            (_as_int(instance.get("templateId")), normalize_name(instance.get("name")), when))

    def rule_for(self, project: Mapping[str, Any]) -> TriggerRule | None:
        return next((r for r in self.rules if r.matches_project(project)), None)

    def entered_at(self, project: Mapping[str, Any], rule: TriggerRule) -> datetime | None:
        """When the project first entered its trigger phase; falls back to the current phase (time = updatedAt)."""
        times = [when for tid, name, when in self.starts.get(str(project.get("id")), [])
                 if rule.matches_phase(tid, name)]
        if times:
            return min(times)
        phase, template_id = current_phase(project)
        if phase and rule.matches_phase(template_id, phase.get("name")):
            stamp = project.get("updatedAt") or project.get("createdAt")
            try:
                return parse_dt(str(stamp)) if stamp else None
            except ValueError:
                return None
        return None
