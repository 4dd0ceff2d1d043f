"""The retention pruner: finished jobs older than their status's retention are deleted with their events and result
(the foreign keys cascade), and dataset exports' files past theirs, by the maintenance worker (worker/maintenance.py).

Retention is per status (CONVEYOR_RETENTION_{SUCCEEDED,CANCELLED,FAILED}_DAYS; 0 keeps forever) unless a job type's
JobSpec.retention_days says otherwise. The job a schedule last made is kept, whatever its age (the schedule shows it),
and so are the jobs of a workflow that has not finished (its next steps read their results). A finished workflow
(with its steps and events) goes after its status's retention; its jobs each follow their own.

The pruner must never stall the hot path: it reads expired rows as a range of ix_jobs_status_finished, deletes them
`batch` at a time, each batch a transaction of its own over rows nobody else holds (FOR UPDATE SKIP LOCKED on
PostgreSQL; the DELETE repeats the status, so a row retried meanwhile is not taken), rests as long as each batch took
(at most half of its time deleting, leaving the database to submits and claims), and stops after its time budget:
the next run goes on where it stopped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, delete, select, true

from core import metrics
from core.db import Sessions
from core.models import Job, Schedule, StoredFile, Workflow
from core.registry import Registry
from core.settings import Settings
from core.types import utcnow

log = logging.getLogger(__name__)
FINISHED = ("succeeded", "cancelled", "failed")


@dataclass(frozen=True)
class Rule:
    """Jobs of `status` (and of the types `types` selects) finished more than `days` ago are deleted."""

    status: str
    days: float
    types: ColumnElement[bool]


@dataclass(frozen=True)
class Retention:
    days: dict[str, float]  # by status, the settings'
    by_type: dict[str, dict[str, float]]  # job type → status → days, the JobSpecs'
    exports_days: float

    @classmethod
    def of(cls, settings: Settings, registry: Registry) -> Retention:
        days = {"succeeded": settings.retention_succeeded_days, "cancelled": settings.retention_cancelled_days,
                "failed": settings.retention_failed_days}  # fmt: skip
        by_type = {spec.name: dict(spec.retention_days) for spec in registry if spec.retention_days}
        return cls(days, by_type, settings.retention_exports_days)

    def rules(self) -> list[Rule]:
        """One rule per status for the types without their own retention, one per type that has one; none for a
        retention of 0 (forever)."""
        found = []
        for status in FINISHED:
            own = sorted(name for name, days in self.by_type.items() if status in days)
            others = Job.type.not_in(own) if own else true()
            found.append(Rule(status, self.days[status], others))
            found.extend(Rule(status, self.by_type[name][status], Job.type == name) for name in own)
        return [rule for rule in found if rule.days > 0]


@dataclass
class PruneReport:
    jobs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISHED, 0))
    files: int = 0
    workflows: int = 0
    finished: bool = True  # False: the budget ran out before every expired row was deleted


def prune(
    sessions: Sessions, retention: Retention, *, data_dir: Path, batch: int, budget_seconds: float,
    now: datetime | None = None,
) -> PruneReport:  # fmt: skip
    """One run: expired jobs rule by rule, `batch` per transaction, then expired export files, within the budget."""
    now = now or utcnow()
    deadline = time.monotonic() + budget_seconds
    report = PruneReport()
    for rule in retention.rules():
        cutoff = now - timedelta(days=rule.days)
        while True:
            if time.monotonic() > deadline:
                report.finished = False
                return report
            started = time.monotonic()
            taken, deleted = _delete_batch(sessions, rule, cutoff, batch)
            report.jobs[rule.status] += deleted
            if taken < batch:
                break
            time.sleep(min(time.monotonic() - started, max(deadline - time.monotonic(), 0)))
    for status in FINISHED:
        if retention.days[status] > 0:
            report.workflows += _delete_workflows(sessions, status, now - timedelta(days=retention.days[status]), batch)
    if retention.exports_days > 0:
        report.files = _delete_exports(sessions, now - timedelta(days=retention.exports_days), data_dir)
    return report


def _delete_batch(sessions: Sessions, rule: Rule, cutoff: datetime, batch: int) -> tuple[int, int]:
    """(rows taken, rows deleted): a row taken may have left its status before the DELETE."""
    kept = select(Schedule.last_job_id).where(Schedule.last_job_id.is_not(None))
    unfinished = select(Workflow.id).where(Workflow.finished_at.is_(None))
    free = Job.workflow_id.is_(None) | Job.workflow_id.not_in(unfinished)
    with sessions() as session, session.begin():
        expired = (
            select(Job.id)
            .where(Job.status == rule.status, Job.finished_at < cutoff, rule.types, Job.id.not_in(kept), free)
            .order_by(Job.finished_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        ids = list(session.scalars(expired))
        if not ids:
            return 0, 0
        gone = session.execute(
            delete(Job).where(Job.id.in_(ids), Job.status == rule.status).returning(Job.id)
        ).all()  # events and result cascade
        metrics.count(session, metrics.PRUNED, rule.status, amount=len(gone))
    return len(ids), len(gone)


def _delete_workflows(sessions: Sessions, status: str, cutoff: datetime, batch: int) -> int:
    """Finished workflows of `status` past their retention, with their steps and events (their jobs stay, each
    pruned by its own rule; ON DELETE SET NULL frees them)."""
    with sessions() as session, session.begin():
        expired = (
            select(Workflow.id)
            .where(Workflow.status == status, Workflow.finished_at < cutoff)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        return len(session.execute(delete(Workflow).where(Workflow.id.in_(expired)).returning(Workflow.id)).all())


def _delete_exports(sessions: Sessions, cutoff: datetime, data_dir: Path) -> int:
    with sessions() as session, session.begin():
        paths = session.scalars(
            delete(StoredFile).where(StoredFile.kind == "export", StoredFile.created_at < cutoff)
            .returning(StoredFile.path)
        ).all()  # fmt: skip
        metrics.count(session, metrics.FILES_PRUNED, amount=len(paths))
    for relative in paths:  # after the commit: a rolled-back delete keeps its file
        (data_dir / relative).unlink(missing_ok=True)
    return len(paths)
