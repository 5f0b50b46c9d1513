"""Trigger rules shared by tap-coperniq (which payments are worth a call) and target-quickbooks-merge (what syncs).

A project has *reached* its workflow's trigger phase when its current phase (from the project list) is that phase or
a later one in the workflow's phase order: a project that jumped over the trigger phase has reached it too. Both
plugins read the same `trigger_phases` setting and resolve it against the same `workflows` stream here, so they can
never disagree about what counts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACES = re.compile(r"\s+")


def normalize_name(name: Any) -> str:
    """Matching key for names: case-folded, accents kept, punctuation dropped, spaces collapsed."""
    if not name:
        return ""
    text = unicodedata.normalize("NFKC", str(name)).casefold()
    text = _PUNCT.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def as_int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class TriggerSpec:
    """One configured trigger: a workflow (id or name) and its phase (id or name)."""

    workflow: str | int
    phase: str | int


def parse_trigger_phases(raw: Any) -> tuple[list[TriggerSpec], list[str]]:
    """`trigger_phases` as given in meltano.yml -> (specs, errors naming the setting)."""
    if raw in (None, ""):
        return [], []
    if not isinstance(raw, list):
        return [], ["trigger_phases: must be a list of {workflow, phase} objects"]
    specs: list[TriggerSpec] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            errors.append(f"trigger_phases[{i}]: must be an object with keys workflow and phase")
            continue
        missing = [k for k in ("workflow", "phase") if item.get(k) in (None, "")]
        if missing:
            errors.append(f"trigger_phases[{i}]: missing {' and '.join(missing)}")
            continue
        key = str(item["workflow"]).strip().casefold()
        if key in seen:
            errors.append(
                f"trigger_phases[{i}]: workflow {item['workflow']!r} already has a trigger "
                f"(trigger_phases[{seen[key]}]); configure one phase per workflow"
            )
            continue
        seen[key] = i
        specs.append(TriggerSpec(item["workflow"], item["phase"]))
    return specs, errors


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
    workflow_name: str = ""  # normalized
    phase_id: int | None = None
    phase_name: str = ""  # normalized
    phase_label: str = ""  # for messages
    resolved: bool = False  # workflow and phase both found in the workflows stream
    #: The workflow's phase order (template id and normalized name -> index), so a project whose current phase is
    #: later than the trigger phase counts as having reached it.
    order_by_id: dict[int, int] = field(default_factory=dict)
    order_by_name: dict[str, int] = field(default_factory=dict)

    def matches_project(self, project: Mapping[str, Any]) -> bool:
        if self.workflow_id is not None and as_int(project.get("workflowId")) == self.workflow_id:
            return True
        return bool(self.workflow_name) and normalize_name(project.get("workflowName")) == self.workflow_name

    def matches_phase(self, template_id: Any, name: Any) -> bool:
        if self.phase_id is not None and as_int(template_id) == self.phase_id:
            return True
        return bool(self.phase_name) and normalize_name(name) == self.phase_name

    def _index(self, template_id: Any, name: Any) -> int | None:
        tid = as_int(template_id)
        if tid is not None and tid in self.order_by_id:
            return self.order_by_id[tid]
        return self.order_by_name.get(normalize_name(name))

    def reached(self, template_id: Any, name: Any) -> bool:
        """The trigger phase itself, or a later phase of the workflow (the project went past it or jumped it)."""
        if self.matches_phase(template_id, name):
            return True
        here, trigger = self._index(template_id, name), self._index(self.phase_id, self.phase_name)
        return here is not None and trigger is not None and here >= trigger

    def project_reached(self, project: Mapping[str, Any]) -> bool:
        """Has this project (of this rule's workflow) reached the trigger phase, judged from its current phase?"""
        phase, template_id, _ = current_phase(project)
        return bool(phase) and self.reached(template_id, phase.get("name"))


def resolve_rules(
    specs: Iterable[TriggerSpec], workflows: Iterable[Mapping[str, Any]]
) -> tuple[list[TriggerRule], list[str]]:
    """Resolve each spec against the workflows (by id, then by name); warnings name what matched nothing."""
    wf_list = list(workflows)
    rules: list[TriggerRule] = []
    warnings: list[str] = []
    for spec in specs:
        wf_id = as_int(spec.workflow)
        wf = next((w for w in wf_list if wf_id is not None and as_int(w.get("id")) == wf_id), None)
        if wf is None:
            wanted = normalize_name(str(spec.workflow))
            wf = next((w for w in wf_list if normalize_name(w.get("name")) == wanted), None)
        rule = TriggerRule(spec)
        if wf is None:
            rule.workflow_id = wf_id
            rule.workflow_name = "" if wf_id is not None else normalize_name(str(spec.workflow))
            rule.phase_id = as_int(spec.phase)
            rule.phase_name = normalize_name(str(spec.phase))
            rule.phase_label = str(spec.phase)
            if wf_list:
                known = ", ".join(str(w.get("name")) for w in wf_list)
                warnings.append(
                    f"trigger_phases: workflow {spec.workflow!r} matches no workflow in the "
                    f"workflows stream (known: {known}); no project of it will sync"
                )
            rules.append(rule)
            continue
        rule.workflow_id = as_int(wf.get("id"))
        rule.workflow_name = normalize_name(wf.get("name"))
        phases = wf.get("phases") or []
        for i, p in enumerate(phases):
            if (pid := as_int(p.get("id"))) is not None:
                rule.order_by_id[pid] = i
            rule.order_by_name.setdefault(normalize_name(p.get("name")), i)
        ph_id = as_int(spec.phase)
        phase = next((p for p in phases if ph_id is not None and as_int(p.get("id")) == ph_id), None)
        if phase is None:
            wanted = normalize_name(str(spec.phase))
            phase = next((p for p in phases if normalize_name(p.get("name")) == wanted), None)
        if phase is not None:
            rule.phase_id = as_int(phase.get("id"))
            rule.phase_name = normalize_name(phase.get("name"))
            rule.phase_label = str(phase.get("name"))
            rule.resolved = True
        else:
            rule.phase_id, rule.phase_name, rule.phase_label = ph_id, normalize_name(str(spec.phase)), str(spec.phase)
            names = ", ".join(str(p.get("name")) for p in phases) or "none"
            warnings.append(
                f"trigger_phases: phase {spec.phase!r} matches no phase of workflow "
                f"{wf.get('name')!r} (its phases: {names}); no project of it will sync"
            )
        rules.append(rule)
    return rules, warnings


def rule_for(rules: Iterable[TriggerRule], project: Mapping[str, Any]) -> TriggerRule | None:
    return next((r for r in rules if r.matches_project(project)), None)
