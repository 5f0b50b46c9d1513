"""Has a project reached its trigger phase, and did it get there after the sync was enabled?"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sync_ledger import Ledger
from sync_ledger.triggers import current_phase

from .context import SRC, LinkMap, Staged
from .errors import ConfigRefused
from .settings import Settings, parse_dt
from .triggers import SNAPSHOT_STREAM, TriggerIndex, TriggerRule, first_reached_seen, observe

#: Synced projects looked at for a rule without a reached marker (ledgers from before it).
SCAN_SYNCED = 2000


class ProjectTriggers:
    """The trigger rules resolved against the staged workflows, the run's phase snapshots, and the verdicts."""

    def __init__(
        self,
        ledger: Ledger,
        settings: Settings,
        workflows: list[dict[str, Any]],
        *,
        first_run_at: datetime | None,
        run_started_at: datetime | None,
        warn: Any,
    ) -> None:
        self.ledger = ledger
        self.s = settings
        self.first_run_at = first_run_at
        self.run_started_at = run_started_at
        self.index = self._build(workflows, warn)
        self.threshold = self._threshold()
        self._dry_snapshots: dict[str, dict[str, Any]] = {}

    def _build(self, workflows: list[dict[str, Any]], warn: Any) -> TriggerIndex:
        triggers = TriggerIndex.build(self.s.trigger_phases, workflows)
        if workflows and triggers.rules and not any(rule.resolved for rule in triggers.rules):
            raise ConfigRefused(
                "trigger_phases matches no phase of any Coperniq workflow, so nothing can sync: "
                + "; ".join(triggers.warnings)
                + ". Fix the names or ids (run `coperniq-qbo doctor`)."
            )
        for message in triggers.warnings:
            warn(message)
        if triggers.rules:
            moved: set[str] = set()
            for iid, instance, status, _ in self.ledger.iter_staged(SRC, "project_phase_instances"):
                triggers.add_instance(instance)
                if status == "pending" and instance.get("projectId") is not None:
                    moved.add(str(instance["projectId"]))
                    if not self.s.dry_run:
                        self.ledger.mark_staged(SRC, "project_phase_instances", iid, "done")
            if moved and not self.s.dry_run:  # new phase history can change a skipped project's verdict
                self.ledger.requeue(SRC, "projects", moved, ("skipped", "waiting"))
        return triggers

    def _threshold(self) -> datetime | None:
        if self.s.backfill:
            return None
        if self.s.trigger_since:
            return self.s.trigger_since
        if self.first_run_at is not None:
            return self.first_run_at
        first = self.ledger.get_meta("first_run_at")
        return parse_dt(first) if first else None

    def observe(self, links: LinkMap, chunks: Iterable[list[Staged]], *, dry: bool) -> None:
        """Snapshot the current phase of every unlinked project this run evaluates (new or changed ones: an
        unchanged project's phase was seen when it arrived), before anything is written: with backfill off, a
        project already at/past its trigger phase when first seen by the first run was there before the sync was
        enabled. Saved first, so a crash later in the run cannot make the next run take those projects for new
        arrivals. A chunk at a time: one read of its snapshots, one write of the changed ones."""
        if not self.uses_snapshots:
            return
        seen_at = (self.run_started_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
        for chunk in chunks:
            todo = [(pid, p) for pid, p, _, _ in chunk if ("project", pid) not in links and "__invalid__" not in p]
            known = self.ledger.staged_many(SRC, SNAPSHOT_STREAM, [pid for pid, _ in todo])
            changed: list[tuple[str, dict[str, Any]]] = []
            for pid, project in todo:
                new = observe(known.get(pid), project, seen_at)
                if new is not None:
                    changed.append((pid, new))
            if dry:
                self._dry_snapshots.update(changed)  # what the run would have saved, for its verdicts
            elif changed:
                self.ledger.stage(SRC, SNAPSHOT_STREAM, changed)
        if not dry:
            self.ledger.flush()

    @property
    def uses_snapshots(self) -> bool:
        """Verdicts read the phase snapshots (backfill off): the pass reads them with each chunk of projects."""
        return bool(self.index.rules) and not self.s.backfill

    def _snapshot(self, pid: str) -> dict[str, Any] | None:
        if pid in self._dry_snapshots:
            return self._dry_snapshots[pid]
        return self.ledger.staged(SRC, SNAPSHOT_STREAM, pid)

    def not_triggered_reason(self, project: Mapping[str, Any]) -> str | None:
        """Why an unlinked project does not sync (yet), or None when it does."""
        triggers = self.index
        rule = triggers.rule_for(project)
        wf = project.get("workflowName") or project.get("workflowId")
        if not triggers.rules:
            return "no trigger_phases configured"
        if rule is None:
            return f"workflow {wf!r} has no trigger phase configured"
        label = rule.phase_label or str(rule.spec.phase)
        if not rule.project_reached(project):
            phase, _, _ = current_phase(project)
            return (
                f"has not reached trigger phase {label!r} of workflow {wf!r} "
                f"(current phase: {phase.get('name') or 'none'})"
            )
        triggers.count_reached(rule)
        if project.get("isActive") is False:
            return f"archived in Coperniq (at/past {label}); archived projects are not synced"
        return self._late_reason(project, rule, label)

    def _late_reason(self, project: Mapping[str, Any], rule: TriggerRule, label: str) -> str | None:
        threshold = self.threshold
        if threshold is None:
            return None  # backfill
        entered = self.index.history_entered_at(project, rule)
        if entered is not None:
            if entered < threshold:
                return (
                    f"entered {label} before the sync was enabled (set backfill: true); entered "
                    f"{entered:%Y-%m-%d %H:%M}Z, enabled {threshold:%Y-%m-%d %H:%M}Z"
                )
            return None
        seen = first_reached_seen(self._snapshot(str(project.get("id"))), project, rule)
        # Seen there by the first run: it may have been there for years (trigger_since earlier than the first run
        # needs the phase history to tell), so only a later sighting counts.
        cutoff = max(threshold, self.first_run_at) if self.first_run_at is not None else threshold
        if seen is None or seen <= cutoff:
            return (
                f"already at/past {label} when the sync was enabled ({threshold:%Y-%m-%d %H:%M}Z; "
                "set backfill: true to sync it)"
            )
        return None

    def unreached_warnings(self, links: LinkMap, *, dry: bool) -> list[str]:
        """A rule no project has reached, in this run or any earlier one: worth telling the operator. A rule once
        reached is remembered in the ledger (projects synced earlier are not evaluated again)."""
        out = []
        for rule in self.index.rules:
            key = f"forward:reached:{rule.spec.workflow}|{rule.spec.phase}"
            if self.index.reached_any(rule) or self.ledger.get_meta(key) or self._has_synced_project(rule, links):
                if not dry and not self.ledger.get_meta(key):
                    self.ledger.set_meta(key, "1")
                continue
            out.append(
                f"No project of workflow {rule.spec.workflow!r} has reached phase "
                f"{rule.phase_label or rule.spec.phase!r} (trigger_phases); nothing of it synced yet."
            )
        return out

    def _has_synced_project(self, rule: TriggerRule, links: LinkMap) -> bool:
        """For a ledger from before the reached marker: a project synced earlier also counts (the first
        SCAN_SYNCED links are looked at, so a rule nobody reached never costs a scan of the whole id map)."""
        for source_id in links.some_projects(SCAN_SYNCED):
            project = self.ledger.staged(SRC, "projects", source_id)
            if project is not None and rule.matches_project(project):
                return True
        return False
