"""The job state machine (one transition table) and the ledger operations that move a job through it.

Every function takes the caller's session first and never commits: the caller owns the unit of work.
Every transition is a conditional UPDATE (the row is the source of truth) plus one `job_events` row. A change made
to a loaded row goes through `move`, which refuses a pair the table lacks; the set-based statements of the hot path
(claim, complete, mark_cancelled) select their row by a source the table allows (`sources_of`, `_owned`).
tests/core/test_state_machine.py tries every pair against these operations.
"""

from __future__ import annotations

import functools
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, literal, or_, select, true, update
from sqlalchemy.orm import Session

from core.errors import InvalidTransition, JobNotFound
from core.models import Job, JobEvent, JobResult
from core.status import JobStatus
from core.types import iso_or_none, utcnow

S = JobStatus
# Core tables for the hot path: plain DML without the ORM's bulk-update bookkeeping.
JOBS = cast(Table, Job.__table__)
EVENTS = cast(Table, JobEvent.__table__)
RESULTS = cast(Table, JobResult.__table__)
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.SCHEDULED: frozenset({S.QUEUED, S.CANCELLED}),
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.RETRYING, S.FAILED, S.CANCELLED}),
    S.RETRYING: frozenset({S.QUEUED, S.CANCELLED}),
    S.FAILED: frozenset({S.QUEUED}),  # manual retry
    S.SUCCEEDED: frozenset(),
    S.CANCELLED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A move the transition table lacks: a bug in Conveyor, not a client's request (that is InvalidTransition)."""


def move(job: Job, target: JobStatus, now: datetime) -> JobStatus:
    """Set a loaded (and locked) row's status, if the table allows it from the one it has; returns that one."""
    source = JobStatus(job.status)
    if target not in TRANSITIONS[source]:
        raise IllegalTransition(f"job {job.id}: {source.value} → {target.value} is not in the transition table")
    job.status, job.updated_at = target.value, now
    return source


def sources_of(target: JobStatus) -> list[str]:
    """Statuses allowed to move to `target`: the WHERE clause of every conditional update."""
    return [s.value for s, targets in TRANSITIONS.items() if target in targets]


@dataclass(frozen=True)
class ClaimedJob:
    id: uuid.UUID
    type: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    tenant_id: str


def event_row(
    job_id: uuid.UUID,
    kind: str,
    *,
    attempt: int = 0,
    worker: str | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One `job_events` row as insert parameters."""
    return {"job_id": job_id, "kind": kind, "attempt": attempt, "worker": worker, "detail": detail,
            "created_at": now or utcnow()}  # fmt: skip


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


def claim_job(
    session: Session, *, job_id: uuid.UUID, worker: str, lease_seconds: float, now: datetime | None = None
) -> ClaimedJob | None:
    """Take a queued job for one attempt. None means a duplicate or stale delivery: the caller does nothing."""
    now = now or utcnow()
    params = _claim_params(job_id, worker, lease_seconds, now)
    connection = session.connection()
    if dml_in_cte(session):
        row = connection.execute(_claim_with_event(), params).one_or_none()
    else:
        row = connection.execute(_claim(), params).one_or_none()
        if row is not None:
            event = event_row(job_id, S.RUNNING.value, attempt=row.attempt, worker=worker, now=now)
            connection.execute(_insert_event(), event)
    return None if row is None else _claimed(job_id, row)


def _claim_params(job_id: uuid.UUID, worker: str, lease_seconds: float, now: datetime) -> dict[str, Any]:
    lease_until = now + timedelta(seconds=lease_seconds)
    return {"b_claim_id": job_id, "b_now": now, "b_lease_until": lease_until, "b_worker": worker}


def _claimed(job_id: uuid.UUID, row: Any) -> ClaimedJob:
    return ClaimedJob(id=job_id, type=row.type, payload=row.payload, attempt=row.attempt, max_attempts=row.max_attempts,
                      tenant_id=row.tenant_id)  # fmt: skip


# The hot path's statements are built once, with bind parameters, and run on the session's Core connection: a
# profile of a worker delivery spent a third of its time building, hashing and ORM-wrapping them on every call.
def _param(name: str, column: str) -> Any:
    """A bind named b_<name>: a parameter named like a column would also be SET by an UPDATE it is passed to."""
    return bindparam(f"b_{name}", type_=JOBS.c[column].type)


def _claimable() -> list[Any]:
    """The statuses a claim takes, as plain binds: a list of values is an expanding IN, re-rendered into the SQL on
    every execution (7% of a worker process's CPU in a profile)."""
    return [literal(status, JOBS.c.status.type) for status in sources_of(S.RUNNING)]


@functools.cache
def _claim() -> Any:
    now = _param("now", "updated_at")
    return (
        update(JOBS)
        .where(
            JOBS.c.id == _param("claim_id", "id"),
            JOBS.c.status.in_(_claimable()),
            JOBS.c.cancel_requested.is_(False),
            or_(JOBS.c.expires_at.is_(None), JOBS.c.expires_at > now),  # an expired job is the reconciler's
        )
        .values(
            status=S.RUNNING.value,
            attempt=JOBS.c.attempt + 1,
            lease_until=_param("lease_until", "lease_until"),
            worker=_param("worker", "worker"),
            started_at=now,
            updated_at=now,
            progress_done=None,
            progress_total=None,
            progress_message=None,
        )
        .returning(JOBS.c.id, JOBS.c.type, JOBS.c.payload, JOBS.c.attempt, JOBS.c.max_attempts, JOBS.c.tenant_id)
    )


@functools.cache
def _claim_with_event() -> Any:
    """One round trip on PostgreSQL: the claim and its event in a single statement."""
    claimed = _claim().cte("claimed")
    event = _event_from(claimed, S.RUNNING.value, claimed.c.attempt).cte("claim_event")
    columns = (claimed.c.type, claimed.c.payload, claimed.c.attempt, claimed.c.max_attempts, claimed.c.tenant_id)
    return select(*columns).add_cte(event)


def dml_in_cte(session: Session) -> bool:
    """PostgreSQL runs INSERT/UPDATE … RETURNING inside WITH; SQLite does not."""
    return session.get_bind().dialect.name == "postgresql"


def _event_from(source: Any, kind: str, attempt: Any) -> Any:
    """INSERT INTO job_events SELECT … FROM a DML CTE: one event per row the CTE touched (binds: b_worker, b_now)."""
    columns = EVENTS.c
    return insert(EVENTS).from_select(
        ["job_id", "kind", "attempt", "worker", "created_at"],
        select(
            source.c.id,
            literal(kind, columns.kind.type),
            attempt,
            _param("worker", "worker"),
            _param("now", "updated_at"),
        ),
    )


def _owned(job_id: uuid.UUID | Any, attempt: int | Any) -> Any:
    """The condition that this attempt still owns the running job (its lease was not taken over)."""
    return (Job.id == job_id) & (Job.status == S.RUNNING.value) & (Job.attempt == attempt)


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
        .where(_owned(job_id, attempt))
        .values(**values)
        .returning(Job.cancel_requested)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    return None if cancel is None else bool(cancel)


def complete_job(
    session: Session, *, job_id: uuid.UUID, attempt: int, worker: str, data: dict[str, Any], now: datetime | None = None
) -> bool:
    """Result and success together. False if this attempt no longer owns the job (nothing is written)."""
    now = now or utcnow()
    params = _complete_params(job_id, attempt, worker, data, now)
    connection = session.connection()
    if dml_in_cte(session):
        return connection.execute(_complete_with_result(), params).scalar_one_or_none() is not None
    if connection.execute(_complete(), params).scalar_one_or_none() is None:
        return False
    connection.execute(_insert_result(), {"job_id": job_id, "data": data, "created_at": now})
    connection.execute(_insert_event(), event_row(job_id, S.SUCCEEDED.value, attempt=attempt, worker=worker, now=now))
    return True


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
    if not dml_in_cte(session):
        completed = complete_job(session, job_id=job_id, attempt=attempt, worker=worker, data=data, now=now)
        return completed, claim_job(session, job_id=next_job_id, worker=worker, lease_seconds=lease_seconds, now=now)
    params = _complete_params(job_id, attempt, worker, data, now) | _claim_params(
        next_job_id, worker, lease_seconds, now
    )
    row = session.connection().execute(_complete_and_claim(), params).one_or_none()
    if row is None:  # neither: this attempt lost its job, and the next one is not claimable
        return False, None
    return row.done_id is not None, None if row.attempt is None else _claimed(next_job_id, row)


def _complete_params(
    job_id: uuid.UUID, attempt: int, worker: str, data: dict[str, Any], now: datetime
) -> dict[str, Any]:
    return {"b_job_id": job_id, "b_attempt": attempt, "b_now": now, "b_worker": worker, "b_data": data}


# SQLite's claim and completion (no DML in CTEs): Core inserts on the session's connection. Through the ORM entity,
# the same INSERT took a quarter of a delivery in its bulk-insert bookkeeping.
@functools.cache
def _insert_event() -> Any:
    return insert(EVENTS)


@functools.cache
def _insert_result() -> Any:
    return insert(RESULTS)


@functools.cache
def _complete() -> Any:
    """Success, if this attempt still owns the running job (binds: b_job_id, b_attempt, b_now)."""
    now = _param("now", "updated_at")
    return (
        update(JOBS)
        .where(_owned(_param("job_id", "id"), _param("attempt", "attempt")))
        .values(status=S.SUCCEEDED.value, finished_at=now, updated_at=now, lease_until=None, error=None)
        .returning(JOBS.c.id)
    )


@functools.cache
def _complete_with_result() -> Any:
    """One round trip on PostgreSQL: success, result and event in a single statement (binds: + b_worker, b_data)."""
    done, result, event = _completion_ctes()
    return select(done.c.id).add_cte(result).add_cte(event)


def _completion_ctes() -> tuple[Any, Any, Any]:
    """Success, its result and its event as CTEs (binds: b_job_id, b_attempt, b_now, b_worker, b_data)."""
    done = _complete().cte("done")
    result = insert(RESULTS).from_select(
        ["job_id", "data", "created_at"],
        select(done.c.id, bindparam("b_data", type_=RESULTS.c.data.type), _param("now", "updated_at")),
    )
    event = _event_from(done, S.SUCCEEDED.value, _param("attempt", "attempt"))
    return done, result.cte("result"), event.cte("done_event")


@functools.cache
def _complete_and_claim() -> Any:
    """The completion and the next claim in one statement. The two touch different rows; PostgreSQL runs every
    data-modifying CTE to completion whether or not the SELECT reads it. The FULL JOIN of the two one-row CTEs
    answers one row when either happened."""
    done, result, done_event = _completion_ctes()
    claimed = _claim().cte("claimed")
    claim_event = _event_from(claimed, S.RUNNING.value, claimed.c.attempt).cte("claim_event")
    columns = (claimed.c.type, claimed.c.payload, claimed.c.attempt, claimed.c.max_attempts, claimed.c.tenant_id)
    both = done.join(claimed, true(), full=True)
    query = select(done.c.id.label("done_id"), *columns).select_from(both)
    return query.add_cte(result).add_cte(done_event).add_cte(claim_event)


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
    query = select(Job).where(_owned(job_id, attempt)).with_for_update().execution_options(populate_existing=True)
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
    detail = {"error": error, "next_attempt_at": iso_or_none(next_at)}
    if event is not None:  # the cause, when it is not the handler's own exception (e.g. lease_expired)
        record_event(session, job_id, event, attempt=attempt, worker=worker, now=now)
    record_event(session, job_id, job.status, attempt=attempt, worker=worker, detail=detail, now=now)
    return JobStatus(job.status)


def mark_cancelled(
    session: Session, *, job_id: uuid.UUID, attempt: int, worker: str, now: datetime | None = None
) -> bool:
    """A running job that stopped at a cancellation check."""
    now = now or utcnow()
    moved = session.execute(
        update(Job)
        .where(_owned(job_id, attempt))
        .values(status=S.CANCELLED.value, finished_at=now, updated_at=now, lease_until=None)
        .returning(Job.id)
    ).scalar_one_or_none()
    if moved is not None:
        record_event(session, job_id, S.CANCELLED.value, attempt=attempt, worker=worker, now=now)
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
        record_event(session, job_id, S.CANCELLED.value, attempt=job.attempt,
                     detail={"from": status.value, "actor": actor}, now=now)  # fmt: skip
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
    move(job, S.QUEUED, now)
    job.max_attempts = max(job.max_attempts, job.attempt + 1)
    job.finished_at, job.next_attempt_at, job.error = None, None, None
    published_alone(job, now)
    record_event(
        session, job_id, S.QUEUED.value, attempt=job.attempt,
        detail={"from": "failed", "by": "retry", "actor": actor}, now=now,
    )  # fmt: skip
    return job


def published_alone(job: Job, now: datetime) -> None:
    """The row is (about to be) published in a message of its own, as everything but a batch submit is: the
    reconciler weighs the broker's depth with `message_jobs`."""
    job.published_at, job.message_jobs = now, 1


def mark_unpublished(session: Session, job_ids: list[uuid.UUID]) -> None:
    """The publish after commit failed: the reconciler publishes these rows again as soon as it can."""
    if job_ids:
        session.execute(update(Job).where(Job.id.in_(job_ids)).values(published_at=None))
