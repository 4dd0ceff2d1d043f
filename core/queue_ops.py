"""What an operator does to a queue during an incident: pause and resume it, drain its pending jobs, retry the failed
jobs matching a filter. For one tenant (the API, an admin key) or for every tenant (ALL_TENANTS: the CLI).

A pause is a row in `queue_pauses`, read by the claim itself (core.statements.shared.paused): workers stop claiming
at once, and the pause holds across restarts of every process. The reconciler neither wakes nor publishes a paused
queue's jobs; a message already in the broker is acked without a claim, its job staying `queued`. Resuming publishes
the queue's queued jobs again.

Drain and retry touch many rows: they go in chunks of CHUNK, each a transaction of its own (row locks held for one
chunk, never for the whole operation), taking only rows nobody else holds (SKIP LOCKED on PostgreSQL).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, ColumnExpressionArgument, select, text, true
from sqlalchemy.orm import Session

from core import metrics
from core.db import Sessions
from core.errors import ConveyorError
from core.failures import GroupFilter
from core.jobs import move, record_events, requeue_failed, workflow_job_finished
from core.models import ALL_TENANTS, FAILING, WAITING, Job, QueuePause
from core.publish import messages_of, publish_committed, published_again
from core.queue import Publisher
from core.registry import Registry
from core.statements.shared import paused
from core.status import JobStatus
from core.types import utcnow

S = JobStatus
CHUNK = 500
RETRY_LIMIT_MAX = 10_000  # one retry call's bound: a bigger backlog is retried in several calls


class QueueNotFound(ConveyorError):
    slug, status, title = "not-found", 404, "Not found"


def check_queue(queue: str, known_queues: Sequence[str]) -> None:
    if queue not in known_queues:
        raise QueueNotFound(f"No queue named {queue!r}. Known queues: {', '.join(known_queues)}.")


def _of_tenant(tenant_id: str) -> ColumnElement[bool]:
    """The jobs of one tenant, or of all (ALL_TENANTS)."""
    return true() if tenant_id == ALL_TENANTS else Job.tenant_id == tenant_id


# --- pause -----------------------------------------------------------------------------------------------------


def pauses(session: Session, tenant_id: str) -> dict[str, QueuePause]:
    """The pauses that hold the tenant's jobs, by queue: its own, or else one of every tenant's."""
    found: dict[str, QueuePause] = {}
    wanted = [ALL_TENANTS] if tenant_id == ALL_TENANTS else [tenant_id, ALL_TENANTS]
    for pause in session.scalars(select(QueuePause).where(QueuePause.tenant_id.in_(wanted))):
        if pause.queue not in found or pause.tenant_id != ALL_TENANTS:
            found[pause.queue] = pause
    return found


def pause_queue(
    session: Session, queue: str, *, tenant_id: str, actor: str | None, reason: str | None, now: datetime | None = None
) -> QueuePause:
    """Pause the queue for the tenant (or all). Pausing a paused queue keeps its first pause and takes the new
    reason."""
    pause = session.get(QueuePause, (queue, tenant_id), with_for_update=True)
    if pause is None:
        pause = QueuePause(queue=queue, tenant_id=tenant_id, paused_by=actor, paused_at=now or utcnow())
        session.add(pause)
    pause.reason = reason if reason is not None else pause.reason
    session.flush()
    return pause


def resume_queue(
    sessions: Sessions, publisher: Publisher, queue: str, *, tenant_id: str, registry: Registry, jobs_per_message: int
) -> int:
    """Lift the tenant's (or the all-tenants) pause and publish the queue's queued jobs it held, oldest first, in
    chunks that each commit, then publish, in shared messages (a batch submit's): the workers have them at once.
    Their earlier messages were acked unclaimed while the pause held (or wait behind; their jobs then run once:
    the claim takes a queued job once). A job another pause still holds waits for that one. Returns how many were
    published (none if the queue was not paused)."""
    with sessions() as session, session.begin():
        pause = session.get(QueuePause, (queue, tenant_id), with_for_update=True)
        if pause is None:
            return 0
        session.delete(pause)
        resumed_at = utcnow()
    held = (
        select(Job)
        .where(
            text(WAITING),  # ix_jobs_waiting: queue, status, then published_at, in order
            Job.status == S.QUEUED.value,
            Job.queue == queue,
            Job.published_at < resumed_at,  # not published since (unpublished ones are the reconciler's)
            _of_tenant(tenant_id),
            ~paused(),
        )
        .order_by(Job.published_at)
        .limit(CHUNK)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    published = 0
    while True:
        with sessions() as session, session.begin():
            now = utcnow()
            jobs = list(session.scalars(held))
            record_events(session, "republished", [(job, {"by": "resume"}) for job in jobs], now=now)
            batch = published_again(jobs, registry, jobs_per_message=jobs_per_message, now=now)
        publish_committed(publisher, sessions, batch)
        published += len(jobs)
        if len(jobs) < CHUNK:
            return published


# --- drain -----------------------------------------------------------------------------------------------------


def drain_queue(
    sessions: Sessions, queue: str, *, tenant_id: str, actor: str | None, reason: str, now: datetime | None = None
) -> int:
    """Cancel the queue's pending jobs (queued, scheduled, retrying) of the tenant (or all), those made before the
    call; running jobs finish. Each gets a `cancelled` event with the reason. Returns how many were cancelled."""
    started = now or utcnow()
    # not started yet (ix_jobs_waiting): what a drain cancels
    pending: list[ColumnExpressionArgument[bool]] = [
        Job.queue == queue,
        text(WAITING),
        _of_tenant(tenant_id),
        Job.created_at <= started,
    ]
    error = {"type": "Drained", "message": reason}
    # In no order: every chunk takes the first rows of the index's range (the ones before it left it), where an
    # order by creation sorted the queue's whole backlog once per chunk, or read the tenant's history for it.
    drained = cancel_matching(sessions, pending, error=error, by="drain", actor=actor, limit=None, oldest_first=False)
    return drained.cancelled


@dataclass(frozen=True)
class CancelReport:
    cancelled: int
    more: bool  # matching jobs are left (the limit was reached): call again


def cancel_matching(
    sessions: Sessions,
    conditions: Sequence[ColumnExpressionArgument[bool]],
    *,
    error: dict[str, str] | None,
    by: str,
    actor: str | None,
    limit: int | None,
    oldest_first: bool = True,
) -> CancelReport:
    """Cancel up to `limit` (or all) not yet running jobs matching `conditions`, oldest first (or in no order), in
    chunks; each gets a `cancelled` event saying by what (`by`) and whom (`actor`), and `error` when given."""
    cancelled = 0
    while limit is None or cancelled < limit:
        wanted = CHUNK if limit is None else min(CHUNK, limit - cancelled)
        with sessions() as session, session.begin():
            at = utcnow()
            query = (
                select(Job)
                .where(*conditions)
                .order_by(Job.created_at if oldest_first else None)
                .limit(wanted)
                .with_for_update(skip_locked=True)
                .execution_options(populate_existing=True)
            )
            jobs = list(session.scalars(query))
            events: list[tuple[Job, dict[str, Any] | None]] = []
            for job in jobs:
                source = move(job, S.CANCELLED, at)
                job.finished_at = at
                detail = {"from": source.value, "by": by, "actor": actor}
                if error is not None:
                    job.error, detail["reason"] = error, error["message"]
                metrics.count(session, metrics.CANCELLED, job.type, job.queue)
                events.append((job, detail))
                workflow_job_finished(session, job, S.CANCELLED, at)
            record_events(session, S.CANCELLED.value, events, now=at)
        cancelled += len(jobs)
        if len(jobs) < wanted:
            return CancelReport(cancelled, more=False)
    with sessions() as session:
        return CancelReport(cancelled, more=session.scalar(select(Job.id).where(*conditions).limit(1)) is not None)


def cancel_group(
    sessions: Sessions, fingerprint: str, *, tenant_id: str, actor: str | None, limit: int
) -> CancelReport:
    """Cancel up to `limit` retrying jobs of a failure group (core/failures.py): a cause that will not go away."""
    retrying = [*GroupFilter(status=S.RETRYING.value).where(tenant_id), Job.error_fingerprint == fingerprint]
    return cancel_matching(sessions, retrying, error=None, by=f"failure group {fingerprint}", actor=actor, limit=limit)


# --- retry -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedFilter:
    """Which failed jobs a bulk retry takes: of one tenant (or all), and any of type, queue, the error's type and
    when they failed (finished_at, after ≤ t < before)."""

    tenant_id: str
    type: str | None = None
    queue: str | None = None
    error_type: str | None = None
    fingerprint: str | None = None  # a failure group (core/failures.py)
    failed_after: datetime | None = None
    failed_before: datetime | None = None

    def conditions(self) -> list[ColumnExpressionArgument[bool]]:
        # A workflow's failed job is retried with its workflow (POST /v1/workflows/{id}/retry), which reruns its
        # skipped dependants too. FAILING is ix_jobs_failures' predicate: the failed jobs are read from that index,
        # not from the tenant's history.
        found: list[ColumnExpressionArgument[bool]] = [
            text(FAILING),
            Job.status == S.FAILED.value,
            _of_tenant(self.tenant_id),
            Job.workflow_id.is_(None),
        ]
        if self.type is not None:
            found.append(Job.type == self.type)
        if self.queue is not None:
            found.append(Job.queue == self.queue)
        if self.error_type is not None:
            found.append(Job.error["type"].as_string() == self.error_type)
        if self.fingerprint is not None:
            found.append(Job.error_fingerprint == self.fingerprint)
        if self.failed_after is not None:
            found.append(Job.finished_at >= self.failed_after)
        if self.failed_before is not None:
            found.append(Job.finished_at < self.failed_before)
        return found


@dataclass(frozen=True)
class RetryReport:
    retried: int
    more: bool  # failed jobs matching the filter are left (the limit was reached): call again
    job_ids: list[uuid.UUID]


def retry_failed(
    sessions: Sessions, publisher: Publisher, matching: FailedFilter, *, limit: int, actor: str | None
) -> RetryReport:
    """Re-queue up to `limit` failed jobs matching the filter, oldest failure first, each as one more attempt (as
    `POST /v1/jobs/{id}/retry` does), and publish them chunk by chunk once committed."""
    retried: list[uuid.UUID] = []
    while len(retried) < limit:
        wanted = min(CHUNK, limit - len(retried))
        with sessions() as session, session.begin():
            now = utcnow()
            query = (
                select(Job)
                .where(*matching.conditions())
                .order_by(Job.finished_at, Job.id)
                .limit(wanted)
                .with_for_update(skip_locked=True)
                .execution_options(populate_existing=True)
            )
            jobs = list(session.scalars(query))
            for job in jobs:
                requeue_failed(session, job, by="bulk retry", actor=actor, now=now)
            batch = messages_of(jobs)
            retried.extend(job.id for job in jobs)
        publish_committed(publisher, sessions, batch)
        if len(jobs) < wanted:
            break
    with sessions() as session:
        more = session.scalar(select(Job.id).where(*matching.conditions()).limit(1)) is not None
    return RetryReport(len(retried), more, retried)


def retry_group(
    sessions: Sessions, publisher: Publisher, fingerprint: str, *, tenant_id: str, actor: str | None, limit: int
) -> RetryReport:
    """Re-queue up to `limit` failed jobs of a failure group (its workflows' jobs are left to their workflows)."""
    return retry_failed(sessions, publisher, FailedFilter(tenant_id, fingerprint=fingerprint), limit=limit, actor=actor)
