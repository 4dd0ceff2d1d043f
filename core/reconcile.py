"""The reconciler: brings the broker back in line with the ledger (run by beat every few seconds).

It publishes what should be in the broker and is not (never published, publish failed, message lost), wakes
due `scheduled` and `retrying` jobs, and recovers jobs whose worker vanished (lease expired). A paused queue's jobs
(core/queue_ops.py) are neither woken nor published until it is resumed.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Float, func, literal, or_, select, text
from sqlalchemy.orm import Session

from core import metrics
from core.jobs import fail_attempt, move, record_event, record_events, workflow_job_finished
from core.models import EXPIRING, RETRYING, RUNNING, SCHEDULED, WAITING, Job
from core.publish import published_again
from core.queue import Message, job_ids_of
from core.registry import Registry
from core.statements.shared import paused
from core.status import JobStatus
from core.types import iso_or_none, utcnow
from core.workflows.advance import sweep_cancellations

S = JobStatus
UNPUBLISHED_GRACE = timedelta(seconds=2)  # the API commits, then publishes: don't race it
# In ix_jobs_waiting; paused: no message until resumed (and marked)
QUEUED_UNPAUSED = text(WAITING) & (Job.status == S.QUEUED.value) & ~paused()


@dataclass
class ReconcileReport:
    to_publish: list[Message] = field(default_factory=list)
    woken: int = 0
    expired: int = 0
    leases_expired: int = 0
    republished: int = 0
    workflows_swept: int = 0

    @property
    def job_ids(self) -> list[uuid.UUID]:
        return job_ids_of(self.to_publish)


def _batch(session: Session, *conditions: object, limit: int, order: object = Job.created_at) -> list[Job]:
    # SKIP LOCKED lets two reconcilers (two beats) share the work on PostgreSQL; SQLite has one writer anyway.
    query = select(Job).where(*conditions).order_by(order).limit(limit)  # type: ignore[arg-type]
    query = query.with_for_update(skip_locked=True).execution_options(populate_existing=True)
    return list(session.scalars(query))


def reconcile(
    session: Session,
    *,
    republish_after: float,
    backoff_cap: float,
    broker_depth: Callable[[str], int] | None = lambda _queue: 0,
    registry: Registry | None = None,
    jobs_per_message: int = 1,
    batch: int = 500,
    unpublished_batch: int = 5000,
    now: datetime | None = None,
) -> ReconcileReport:
    """One tick. The caller commits, then publishes `report.to_publish`: the rows it wakes and those never published
    share messages as a batch submit's do (given the registry and `jobs_per_message` > 1).

    `broker_depth(queue)` is how many messages the broker holds for a queue (the default, none, makes every `queued`
    row unclaimed for `republish_after` seconds count as a lost message). None skips the search for lost messages,
    which weighs every queued row (the maintenance tick runs it every `backlog_interval`); the rest of a tick reads
    only the rows that are due."""
    now = now or utcnow()
    report = ReconcileReport()
    lost_rows: list[Job] = []  # queued rows whose message the broker seems to have lost

    # Each scan says its partial index's predicate (core/models.py), reads that index's range, and takes the rows
    # longest due first.
    for job in _batch(session, text(RUNNING), Job.lease_until < now, limit=batch, order=Job.lease_until):
        error = {"type": "WorkerLost", "message": f"the worker {job.worker} stopped renewing its lease"}
        _run_again(session, job, error, backoff_cap, now)
        report.leases_expired += 1
    session.flush()

    for job in _batch(session, text(EXPIRING), Job.expires_at <= now, limit=batch, order=Job.expires_at):
        # Not started in time (e.g. a schedule's slot, hours late after an outage): a visible cancel, not a late run.
        error = {"type": "Expired", "message": f"not started before its expiry {iso_or_none(job.expires_at)}"}
        detail = {"from": move(job, S.CANCELLED, now).value, "reason": "expired"}
        record_event(session, job.id, S.CANCELLED.value, attempt=job.attempt, detail=detail, now=now)
        metrics.count(session, metrics.CANCELLED, job.type, job.queue)
        job.error, job.finished_at = error, now
        workflow_job_finished(session, job, S.CANCELLED, now)
        report.expired += 1
    session.flush()

    # First: the rows that get their first message below must not count as published without one.
    stale = Job.published_at < now - timedelta(seconds=republish_after)
    # Published rows: the API commits before it publishes, so a row published within the grace may lack its message
    # for a moment; leaving it out errs towards fewer republishes (its message, once sent, is in the depth).
    settled = Job.published_at < now - UNPUBLISHED_GRACE
    lost = {} if broker_depth is None else _missing_messages(session, stale, settled, broker_depth)
    for queue, missing in lost.items():
        rows = _batch(session, QUEUED_UNPAUSED, Job.queue == queue, stale, limit=batch,
                      order=Job.published_at)  # fmt: skip
        lost_rows.extend(_oldest_messages(rows, missing))

    # After a broker outage every job submitted meanwhile is here: a bigger batch (in shared messages) so that the
    # workers get their backlog back in a few ticks, not one tick per 500 jobs. Before the wake-ups below, whose rows
    # become queued without a publish time until the end of the tick.
    unpublished = Job.published_at.is_(None) & (Job.updated_at < now - UNPUBLISHED_GRACE)
    never_sent = _batch(session, QUEUED_UNPAUSED, unpublished, limit=unpublished_batch)
    record_events(session, "republished", [(job, None) for job in lost_rows + never_sent], now=now)
    report.republished = len(lost_rows) + len(never_sent)

    woken: list[Job] = []
    for status, due in ((SCHEDULED, Job.run_at), (RETRYING, Job.next_attempt_at)):
        woken.extend(_batch(session, text(status), due <= now, ~paused(), limit=batch, order=due))
    record_events(session, S.QUEUED.value, [(job, {"from": move(job, S.QUEUED, now).value}) for job in woken],
                  now=now)  # fmt: skip
    report.woken = len(woken)
    # A lost message is a guess: a message a worker holds is missing from the depth too, and its rows would be sent
    # twice. Sent one message each, a wrong guess costs one duplicate per worker process, not a shared message's
    # worth. The rest certainly has no message.
    alone = published_again(lost_rows, None, jobs_per_message=1, now=now)
    shared = published_again(never_sent + woken, registry, jobs_per_message=jobs_per_message, now=now)
    report.to_publish = alone + shared
    report.workflows_swept = sweep_cancellations(session, now)
    return report


def release_jobs_of(session: Session, workers: list[str], *, backoff_cap: float, now: datetime | None = None) -> int:
    """The running jobs of worker processes known to be dead (`conveyor up` killed them when its shutdown grace ran
    out), `workers` as name prefixes (jobs@host:): run again at once, as an expired lease would make them, without
    waiting for the lease. Returns how many."""
    now = now or utcnow()
    held = or_(*(Job.worker.startswith(prefix, autoescape=True) for prefix in workers))
    jobs = _batch(session, text(RUNNING), held, limit=10_000)
    for job in jobs:
        error = {"type": "WorkerStopped", "message": f"the worker {job.worker} was stopped before the job finished"}
        _run_again(session, job, error, backoff_cap, now)
    return len(jobs)


def _run_again(session: Session, job: Job, error: dict[str, str], backoff_cap: float, now: datetime) -> None:
    """A running attempt whose worker is gone: failed, and retried at once (still bounded by max_attempts)."""
    fail_attempt(session, job_id=job.id, attempt=job.attempt, worker=job.worker, error=error, retryable=True,
                 backoff=0.0, backoff_cap=backoff_cap, event="lease_expired", now=now)  # fmt: skip


def _missing_messages(
    session: Session, stale: object, settled: object, broker_depth: Callable[[str], int]
) -> dict[str, float]:
    """Per queue holding stale `queued` rows: how many messages the broker lacks for its published rows.

    A row waiting longer than `republish_after` is not proof of a lost message: behind a deep backlog every row
    waits, and publishing each one again every tick fed the backlog its own duplicates. So the rows are weighed
    against the queue's depth: a row counts 1/`message_jobs` of a message (a batch's jobs share messages). An empty
    queue lacks every message. Messages a worker holds unacknowledged, and duplicates already queued, make the count
    low for a while, never high: they are consumed, and later ticks republish what is still missing."""
    queued = QUEUED_UNPAUSED
    has_stale = select(Job.id).where(queued, stale).limit(1)  # type: ignore[arg-type]
    queues = [q for q in _waiting_queues(session) if session.scalar(has_stale.where(Job.queue == q)) is not None]
    # The depths first: a message consumed between the two reads then errs towards fewer republishes, not more.
    depths = {queue: broker_depth(queue) for queue in queues}
    weight = func.sum(literal(1.0, Float) / Job.message_jobs)
    published = (
        select(Job.queue, weight)
        .where(queued, settled, Job.queue.in_(queues))  # type: ignore[arg-type]
        .group_by(Job.queue)
    )
    expected: dict[str, float] = {queue: float(total or 0) for queue, total in session.execute(published).all()}
    missing = {queue: math.inf if depths[queue] == 0 else expected.get(queue, 0.0) - depths[queue] for queue in queues}
    return {queue: count for queue, count in missing.items() if count > 0}


def _waiting_queues(session: Session) -> list[str]:
    """The queues holding jobs not started yet, one probe of ix_jobs_waiting (queue first) each: a DISTINCT sorted
    the whole backlog, 1.5 s behind 2,000,000 queued jobs on PostgreSQL."""
    found: list[str] = []
    after: list[ColumnElement[bool]] = []
    while (queue := session.scalar(select(func.min(Job.queue)).where(text(WAITING), *after))) is not None:
        found.append(queue)
        after = [Job.queue > queue]
    return found


def _oldest_messages(rows: list[Job], missing: float) -> list[Job]:
    """The oldest rows, up to `missing` messages' worth: FIFO queues lose their oldest messages' (they would have been
    consumed first), and a message is republished whole (its rows, one message each)."""
    taken: list[Job] = []
    weight = 0.0
    for job in rows:
        weight += 1 / job.message_jobs
        if weight > missing + 1e-9:
            break
        taken.append(job)
    return taken
