"""The ledger operations that move a job through the transition table (core.status.TRANSITIONS).

Every function takes the caller's session first and never commits: the caller owns the unit of work.
Every transition is a conditional UPDATE (the row is the source of truth) plus one `job_events` row. A change made
to a loaded row goes through `move`, which refuses a pair the table lacks; the set-based statements (the claim and
completion of the hot path, in core/statements, and mark_cancelled) select their row by a source the table allows
(`sources_of`, `owned`). tests/core/test_state_machine.py tries every pair against these operations.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from core import failures, metrics, statements
from core.errors import InvalidTransition, JobNotFound
from core.models import Job, JobEvent
from core.statements import Claim, Completion, StepCount
from core.statements.shared import event_row, owned
from core.status import TRANSITIONS, JobStatus
from core.types import iso_or_none, utcnow
from core.workflows import advance

S = JobStatus


class IllegalTransition(RuntimeError):
    """A move the transition table lacks: a bug in Conveyor, not a client's request (that is InvalidTransition)."""


def move(job: Job, target: JobStatus, now: datetime) -> JobStatus:
    """Set a loaded (and locked) row's status, if the table allows it from the one it has; returns that one."""
    source = JobStatus(job.status)
    if target not in TRANSITIONS[source]:
        raise IllegalTransition(f"job {job.id}: {source.value} → {target.value} is not in the transition table")
    job.status, job.updated_at = target.value, now
    return source


@dataclass(frozen=True)
class ClaimedJob:
    id: uuid.UUID
    type: str
    queue: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    tenant_id: str
    request_id: str | None = None  # the API request that submitted it (on the worker's log lines)
    workflow_id: uuid.UUID | None = None  # the workflow step it runs for: its success releases the next steps
    workflow_step: str | None = None


def record_event(
    session: Session,
    job_id: uuid.UUID,
    kind: str,
    *,
    attempt: int = 0,
    worker: str | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> None:
    # A Core INSERT: events are never read back in the same unit of work, so the ORM's flush bookkeeping is waste.
    session.execute(insert(JobEvent), event_row(job_id, kind, attempt=attempt, worker=worker, detail=detail, now=now))


def record_events(
    session: Session, kind: str, events: Sequence[tuple[Job, dict[str, Any] | None]], *, now: datetime
) -> None:
    """The same kind of event for many jobs (a chunk of a bulk operation), each at its job's attempt with its
    detail: one multi-row INSERT, where an INSERT per job took two thirds of a queue's resume."""
    if events:
        rows = [event_row(job.id, kind, attempt=job.attempt, detail=detail, now=now) for job, detail in events]
        session.execute(insert(JobEvent), rows)


def claim_job(
    session: Session, *, job_id: uuid.UUID, worker: str, lease_seconds: float, now: datetime | None = None
) -> ClaimedJob | None:
    """Take a queued job for one attempt. None means a duplicate or stale delivery: the caller does nothing."""
    now = now or utcnow()
    row = statements.of(session).claim(session.connection(), _claim(job_id, worker, lease_seconds, now))
    return None if row is None else _claimed(session, job_id, row, now)


def _claim(job_id: uuid.UUID, worker: str, lease_seconds: float, now: datetime) -> Claim:
    return Claim(job_id, worker, now + timedelta(seconds=lease_seconds), now)


def _claimed(session: Session, job_id: uuid.UUID, row: Any, now: datetime) -> ClaimedJob:
    """The claimed row as the handler gets it, counted (started, and how long it waited) once it commits."""
    metrics.count(session, metrics.STARTED, row.type, row.queue)
    metrics.observe(session, metrics.QUEUE_WAIT, row.type, value=max((now - row.due_at).total_seconds(), 0.0))
    return ClaimedJob(id=job_id, type=row.type, queue=row.queue, payload=row.payload, attempt=row.attempt,
                      max_attempts=row.max_attempts, tenant_id=row.tenant_id, request_id=row.request_id,
                      workflow_id=row.workflow_id, workflow_step=row.workflow_step)  # fmt: skip


def _completed(session: Session, completed: statements.Completed | None) -> bool:
    if completed is not None:
        metrics.count(session, metrics.SUCCEEDED, completed.type, completed.queue)
    return completed is not None


def renew_lease(
    session: Session,
    *,
    job_id: uuid.UUID,
    attempt: int,
    lease_seconds: float,
    progress: tuple[int, int | None, str | None] | None = None,
    now: datetime | None = None,
) -> bool | None:
    """Extend the lease (and record progress). Returns cancel_requested, or None if the attempt lost the job."""
    now = now or utcnow()
    # A bare lease renewal keeps updated_at, so the job's ETag only changes when something a client sees does.
    values: dict[str, Any] = {"lease_until": now + timedelta(seconds=lease_seconds), "updated_at": Job.updated_at}
    if progress is not None:
        values.update(progress_done=progress[0], progress_total=progress[1], progress_message=progress[2])
        values["updated_at"] = now
    cancel = session.execute(
        update(Job)
        .where(owned(job_id, attempt))
        .values(**values)
        .returning(Job.cancel_requested)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    return None if cancel is None else bool(cancel)


def complete_job(
    session: Session, *, job_id: uuid.UUID, attempt: int, worker: str, data: dict[str, Any], now: datetime | None = None
) -> bool:
    """Result and success together. False if this attempt no longer owns the job (nothing is written). A
    workflow's job: the caller moves the workflow on in the same transaction (`workflow_job_finished`)."""
    done = Completion(job_id, attempt, worker, data, now or utcnow())
    return _completed(session, statements.of(session).complete(session.connection(), done))


def complete_and_claim(
    session: Session,
    *,
    job_id: uuid.UUID,
    attempt: int,
    worker: str,
    data: dict[str, Any],
    next_job_id: uuid.UUID,
    lease_seconds: float,
    now: datetime | None = None,
) -> tuple[bool, ClaimedJob | None]:
    """`complete_job`, then `claim_job` of the next job of the same message, in one unit of work: on PostgreSQL one
    statement, on SQLite one transaction, where they were two of each per job. Returns (completed, claimed)."""
    now = now or utcnow()
    done = Completion(job_id, attempt, worker, data, now)
    completed, row = statements.of(session).complete_and_claim(
        session.connection(), done, _claim(next_job_id, worker, lease_seconds, now)
    )
    return _completed(session, completed), None if row is None else _claimed(session, next_job_id, row, now)


def complete_counted(
    session: Session,
    *,
    job: ClaimedJob,
    worker: str,
    data: dict[str, Any],
    next_job_id: uuid.UUID | None,
    lease_seconds: float,
    now: datetime,
) -> tuple[ClaimedJob | None] | None:
    """A workflow's job that is not its step's last unfinished one (an item of a map, most often): its success and
    its count on the step (and the claim of the message's next job) in one statement on PostgreSQL, so it costs what
    a plain job's completion does. None: nothing was written (it is the step's last job, or this attempt lost it),
    and the caller completes it in the transaction that moves the workflow on (`workflow_job_finished`). Otherwise
    a 1-tuple of the next job's claim (None if there was none to make)."""
    assert job.workflow_id is not None and job.workflow_step is not None  # noqa: S101 - a workflow's job
    done = Completion(job.id, job.attempt, worker, data, now)
    count = StepCount(job.workflow_id, job.workflow_step)
    to_claim = None if next_job_id is None or next_job_id == job.id else _claim(next_job_id, worker, lease_seconds, now)
    completed, row = statements.of(session).complete_counted(session.connection(), done, count, to_claim)
    if not _completed(session, completed):
        return None
    return (None if row is None or to_claim is None else _claimed(session, to_claim.job_id, row, now),)


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: base·2^(attempt-1), capped, then scaled by a random 0.5-1.0."""
    delay: float = min(cap, base * 2.0 ** max(attempt - 1, 0))
    return delay * random.uniform(0.5, 1.0)  # noqa: S311 - not crypto


def fail_attempt(
    session: Session,
    *,
    job_id: uuid.UUID,
    attempt: int,
    worker: str | None,
    error: dict[str, Any],
    retryable: bool,
    backoff: float,
    backoff_cap: float,
    event: str | None = None,
    now: datetime | None = None,
) -> JobStatus | None:
    """Record a failed attempt: `retrying` with next_attempt_at, or `failed` when attempts are exhausted or the
    error is not retryable. None if this attempt no longer owns the job."""
    now = now or utcnow()
    query = select(Job).where(owned(job_id, attempt)).with_for_update().execution_options(populate_existing=True)
    job = session.scalars(query).one_or_none()
    if job is None:
        return None
    if retryable and job.attempt < job.max_attempts:
        next_at = now + timedelta(seconds=backoff_delay(job.attempt, backoff, backoff_cap))
        move(job, S.RETRYING, now)
        job.next_attempt_at, job.finished_at = next_at, None
    else:
        move(job, S.FAILED, now)
        job.finished_at, next_at = now, None
    job.error, job.lease_until = error, None
    job.error_fingerprint, job.failed_at = failures.fingerprint(job.type, error), now
    detail = {"error": error, "next_attempt_at": iso_or_none(next_at)}
    metrics.count(session, metrics.RETRIED if job.status == S.RETRYING else metrics.FAILED, job.type, job.queue)
    if event is not None:  # the cause, when it is not the handler's own exception (e.g. lease_expired)
        record_event(session, job_id, event, attempt=attempt, worker=worker, now=now)
        if event == "lease_expired":
            metrics.count(session, metrics.LEASE_EXPIRED, job.type, job.queue)
    record_event(session, job_id, job.status, attempt=attempt, worker=worker, detail=detail, now=now)
    if job.status == S.FAILED:
        workflow_job_finished(session, job, S.FAILED, now)
    return JobStatus(job.status)


def mark_cancelled(
    session: Session, *, job_id: uuid.UUID, attempt: int, worker: str, now: datetime | None = None
) -> bool:
    """A running job that stopped at a cancellation check."""
    now = now or utcnow()
    moved = session.execute(
        update(Job)
        .where(owned(job_id, attempt))
        .values(status=S.CANCELLED.value, finished_at=now, updated_at=now, lease_until=None)
        .returning(Job.id, Job.type, Job.queue, Job.error, Job.workflow_id, Job.workflow_step)
    ).one_or_none()
    if moved is not None:
        record_event(session, job_id, S.CANCELLED.value, attempt=attempt, worker=worker, now=now)
        metrics.count(session, metrics.CANCELLED, moved.type, moved.queue)
        workflow_job_finished(session, moved, S.CANCELLED, now)
    return moved is not None


def locked_job(session: Session, job_id: uuid.UUID, tenant_id: str) -> Job:
    query = select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id).with_for_update()
    job = session.scalars(query.execution_options(populate_existing=True)).one_or_none()
    if job is None:
        raise JobNotFound(f"No job with id {job_id}.")
    return job


def cancel_job(
    session: Session, job_id: uuid.UUID, *, tenant_id: str = "default", actor: str | None = None,
    now: datetime | None = None,
) -> Job:  # fmt: skip
    """Cancel: a job not yet running becomes `cancelled` at once; a running one at its next progress check.
    `actor` (the API key's id) is recorded in the event."""
    now = now or utcnow()
    job = locked_job(session, job_id, tenant_id)
    status = JobStatus(job.status)
    if status is S.CANCELLED:
        return job  # cancelling twice is harmless
    if status.terminal:
        raise InvalidTransition(f"Job {job_id} already {status.value}; only unfinished jobs can be cancelled.")
    job.cancel_requested, job.updated_at = True, now
    if status is S.RUNNING:
        record_event(session, job_id, "cancel_requested", attempt=job.attempt, worker=job.worker,
                     detail={"actor": actor}, now=now)  # fmt: skip
    else:
        move(job, S.CANCELLED, now)
        job.finished_at = now
        metrics.count(session, metrics.CANCELLED, job.type, job.queue)
        record_event(session, job_id, S.CANCELLED.value, attempt=job.attempt,
                     detail={"from": status.value, "actor": actor}, now=now)  # fmt: skip
        workflow_job_finished(session, job, S.CANCELLED, now)
    return job


def retry_job(
    session: Session, job_id: uuid.UUID, *, tenant_id: str = "default", actor: str | None = None,
    now: datetime | None = None,
) -> Job:  # fmt: skip
    """Re-queue a failed job as one more attempt; its events keep every earlier attempt and error (and `actor`,
    the API key's id, that asked)."""
    now = now or utcnow()
    job = locked_job(session, job_id, tenant_id)
    if job.status != S.FAILED.value:
        raise InvalidTransition(f"Job {job_id} is {job.status}; only failed jobs can be retried.")
    if job.workflow_id is not None:
        raise InvalidTransition(f"Job {job_id} is step {job.workflow_step!r} of workflow {job.workflow_id}: retry "
                                f"the workflow (POST /v1/workflows/{job.workflow_id}/retry), which reruns its failed "
                                "and skipped steps.")  # fmt: skip
    requeue_failed(session, job, by="retry", actor=actor, now=now)
    return job


def requeue_failed(session: Session, job: Job, *, by: str, actor: str | None, now: datetime) -> None:
    """A failed job (loaded and locked) queued again for one more attempt, to be published alone."""
    move(job, S.QUEUED, now)
    job.max_attempts = max(job.max_attempts, job.attempt + 1)
    # next_attempt_at: when it became due again (the claim measures its queue wait from it)
    job.finished_at, job.next_attempt_at, job.error, job.error_fingerprint = None, now, None, None
    published_alone(job, now)
    record_event(session, job.id, S.QUEUED.value, attempt=job.attempt,
                 detail={"from": "failed", "by": by, "actor": actor}, now=now)  # fmt: skip


def published_alone(job: Job, now: datetime) -> None:
    """The row is (about to be) published in a message of its own, as a retry always is: the reconciler weighs the
    broker's depth with `message_jobs`. Rows that may share messages (a batch submit, a resume, the reconciler's
    never-sent rows) record theirs with core.publish.record_message_sizes."""
    job.published_at, job.message_jobs = now, 1


def workflow_job_finished(session: Session, job: Any, status: JobStatus, now: datetime) -> None:
    """A job reached a final status in this transaction: if it runs for a workflow, the workflow moves on in the
    same transaction (core/workflows/advance.py). `job` has the job's id, error, workflow_id and workflow_step."""
    if job.workflow_id is not None:
        advance.job_finished(session, job, status, now)


def mark_unpublished(session: Session, job_ids: list[uuid.UUID]) -> None:
    """The publish after commit failed: the reconciler publishes these rows again as soon as it can."""
    if job_ids:
        session.execute(update(Job).where(Job.id.in_(job_ids)).values(published_at=None))
