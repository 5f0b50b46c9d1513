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


def current_phase(project: Mapping[str, Any]) -> tuple[Mapping[str, Any], Any, bool]:
    """The project's current phase, its template id, and whether it is a Workflows 1.0 `stage` (whose id is not
    a phase template id: it matches a trigger by name only)."""
    phase = project.get("phase") or {}
    if phase:
        return phase, phase.get("templateId"), False
    return project.get("stage") or {}, None, True


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
    #: The workflow's phase order (template id and normalized name -> index), so a project whose current phase is
    #: later than the trigger phase counts as having reached it even without its phase history.
    order_by_id: dict[int, int] = field(default_factory=dict)
    order_by_name: dict[str, int] = field(default_factory=dict)

    def matches_project(self, project: Mapping[str, Any]) -> bool:
        if self.workflow_id is not None and _as_int(project.get("workflowId")) == self.workflow_id:
            return True
        return bool(self.workflow_name) and normalize_name(project.get("workflowName")) == self.workflow_name

    def matches_phase(self, template_id: Any, name: Any) -> bool:
        if self.phase_id is not None and _as_int(template_id) == self.phase_id:
            return True
        return bool(self.phase_name) and normalize_name(name) == self.phase_name

    def _index(self, template_id: Any, name: Any) -> int | None:
        tid = _as_int(template_id)
        if tid is not None and tid in self.order_by_id:
            return self.order_by_id[tid]
        return self.order_by_name.get(normalize_name(name))

    def reached(self, template_id: Any, name: Any) -> bool:
        """The trigger phase itself, or a later phase of the workflow (the project went past it or jumped it)."""
        if self.matches_phase(template_id, name):
            return True
        here, trigger = self._index(template_id, name), self._index(self.phase_id, self.phase_name)
        return here is not None and trigger is not None and here >= trigger


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
                for i, p in enumerate(phases):
                    if (pid := _as_int(p.get("id"))) is not None:
                        rule.order_by_id[pid] = i
                    rule.order_by_name.setdefault(normalize_name(p.get("name")), i)
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
        """When the project first entered its trigger phase; without that phase in its history, when it was seen at
        it (or, for a Workflows 1.0 stage, at a later one): time = updatedAt."""
        times = [when for tid, name, when in self.starts.get(str(project.get("id")), [])
                 if rule.matches_phase(tid, name)]
        if times:
            return min(times)
        phase, template_id, is_stage = current_phase(project)
        if not phase:
            return None
        # A Workflows 1.0 stage has no history behind it: a later stage is the only sign it went past the trigger.
        # (Phases use the history; "reached from the list" for them is the API-budget issue's change.)
        if (rule.reached if is_stage else rule.matches_phase)(template_id, phase.get("name")):
            stamp = project.get("updatedAt") or project.get("createdAt")
            try:
                return parse_dt(str(stamp)) if stamp else None
            except ValueError:
                return None
        return None
