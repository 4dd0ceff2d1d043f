"""The reconciler: brings the broker back in line with the ledger (run by beat every few seconds).

It publishes what should be in the broker and is not (never published, publish failed, message lost), wakes
due `scheduled` and `retrying` jobs, and recovers jobs whose worker vanished (lease expired).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from core.jobs import fail_attempt, record_event
from core.models import Job
from core.queue import Wakeup
from core.status import JobStatus
from core.types import iso_or_none, utcnow

S = JobStatus
UNPUBLISHED_GRACE = timedelta(seconds=2)  # the API commits, then publishes: don't race it


@dataclass
class ReconcileReport:
    to_publish: list[Wakeup] = field(default_factory=list)
    woken: int = 0
    expired: int = 0
    leases_expired: int = 0
    republished: int = 0


def _batch(session: Session, *conditions: object, limit: int, order: object = Job.created_at) -> list[Job]:
    # SKIP LOCKED lets two reconcilers (two beats) share the work on PostgreSQL; SQLite has one writer anyway.
    query = select(Job).where(*conditions).order_by(order).limit(limit)  # type: ignore[arg-type]
    query = query.with_for_update(skip_locked=True).execution_options(populate_existing=True)
    return list(session.scalars(query))


def _wakeup(job: Job) -> Wakeup:
    return Wakeup(job_id=job.id, type=job.type, queue=job.queue, priority=job.priority)


def reconcile(
    session: Session,
    *,
    republish_after: float,
    backoff_cap: float,
    broker_depth: Callable[[str], int] = lambda _queue: 0,
    batch: int = 500,
    now: datetime | None = None,
) -> ReconcileReport:
    """One tick. The caller commits, then publishes `report.to_publish`.

    `broker_depth(queue)` is how many messages the broker holds for a queue (the default, none, makes every `queued`
    row unclaimed for `republish_after` seconds count as a lost message)."""
    now = now or utcnow()
    report = ReconcileReport()

    for job in _batch(session, Job.status == S.RUNNING.value, Job.lease_until < now, limit=batch):
        error = {"type": "WorkerLost", "message": f"the worker {job.worker} stopped renewing its lease"}
        fail_attempt(
            session,
            job_id=job.id,
            attempt=job.attempt,
            worker=job.worker,
            error=error,
            retryable=True,
            backoff=0.0,  # the worker is gone, not the job's fault: run again at once (still bounded by max_attempts)
            backoff_cap=backoff_cap,
            event="lease_expired",
            now=now,
        )
        report.leases_expired += 1
    session.flush()

    waiting = [S.SCHEDULED.value, S.QUEUED.value, S.RETRYING.value]
    for job in _batch(session, Job.status.in_(waiting), Job.expires_at <= now, limit=batch):
        # Not started in time (e.g. a schedule's slot, hours late after an outage): a visible cancel, not a late run.
        error = {"type": "Expired", "message": f"not started before its expiry {iso_or_none(job.expires_at)}"}
        detail = {"from": job.status, "reason": "expired"}
        record_event(session, job.id, S.CANCELLED.value, attempt=job.attempt, detail=detail, now=now)
        job.status, job.error, job.finished_at, job.updated_at = S.CANCELLED.value, error, now, now
        report.expired += 1
    session.flush()

    # First: the rows that get their first message below must not count as published without one.
    stale = Job.published_at < now - timedelta(seconds=republish_after)
    for queue, missing in _missing_messages(session, stale, broker_depth).items():
        rows = _batch(session, Job.status == S.QUEUED.value, Job.queue == queue, stale, limit=min(missing, batch),
                      order=Job.published_at)  # fmt: skip
        for job in rows:
            _republish(session, job, report, now)

    due = or_(
        (Job.status == S.SCHEDULED.value) & (Job.run_at <= now),
        (Job.status == S.RETRYING.value) & (Job.next_attempt_at <= now),
    )
    for job in _batch(session, due, limit=batch):
        record_event(session, job.id, S.QUEUED.value, attempt=job.attempt, detail={"from": job.status}, now=now)
        job.status, job.published_at, job.updated_at = S.QUEUED.value, now, now
        report.to_publish.append(_wakeup(job))
        report.woken += 1

    unpublished = Job.published_at.is_(None) & (Job.updated_at < now - UNPUBLISHED_GRACE)
    for job in _batch(session, Job.status == S.QUEUED.value, unpublished, limit=batch):
        _republish(session, job, report, now)
    return report


def _republish(session: Session, job: Job, report: ReconcileReport, now: datetime) -> None:
    record_event(session, job.id, "republished", attempt=job.attempt, now=now)
    job.published_at = now
    report.to_publish.append(_wakeup(job))
    report.republished += 1


def _missing_messages(session: Session, stale: object, broker_depth: Callable[[str], int]) -> dict[str, int]:
    """Per queue holding stale `queued` rows: how many of its published rows have no message in the broker.

    A row waiting longer than `republish_after` is not proof of a lost message: behind a deep backlog every row
    waits, and publishing each one again every tick fed the backlog its own duplicates. The broker queues are FIFO,
    so the messages still there belong to the newest rows; what the broker lacks (it restarted without persistence,
    a message was dropped) is the oldest rows'. Duplicates already in the broker make this count low for a while
    (never high): they are consumed, and the next ticks republish what is still missing."""
    queued = Job.status == S.QUEUED.value
    queues = list(session.scalars(select(Job.queue).where(queued, stale).distinct()))  # type: ignore[arg-type]
    # The depths first: a message consumed between the two reads then errs towards fewer republishes, not more.
    depths = {queue: broker_depth(queue) for queue in queues}
    published = (
        select(Job.queue, func.count())
        .where(queued, Job.published_at.is_not(None), Job.queue.in_(queues))
        .group_by(Job.queue)
    )
    counts: dict[str, int] = {queue: count for queue, count in session.execute(published).all()}
    return {queue: counts.get(queue, 0) - depths[queue] for queue in queues if counts.get(queue, 0) > depths[queue]}
