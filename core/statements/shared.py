"""What both databases' statements share: the tables, the bind parameters of a claim and a completion, the
conditional UPDATEs themselves, and the values of a row as the driver takes them."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Dialect, Table, bindparam, func, literal, or_, select, update
from sqlalchemy import inspect as sa_inspect

from core.models import ALL_TENANTS, Job, JobEvent, JobResult, QueuePause, Workflow, WorkflowStep
from core.status import JobStatus, sources_of
from core.types import utcnow

S = JobStatus
# Core tables: plain DML without the ORM's bulk-update bookkeeping.
JOBS = cast(Table, Job.__table__)
EVENTS = cast(Table, JobEvent.__table__)
RESULTS = cast(Table, JobResult.__table__)
PAUSES = cast(Table, QueuePause.__table__)
WORKFLOWS = cast(Table, Workflow.__table__)
STEPS = cast(Table, WorkflowStep.__table__)
JOB_COLUMNS = tuple((attribute.key, attribute.columns[0].key) for attribute in sa_inspect(Job).column_attrs)
JOB_COLUMN_KEYS = tuple(column for _, column in JOB_COLUMNS)  # the jobs table's columns, in insert order
EVENT_COLUMNS = ("job_id", "kind", "attempt", "worker", "detail", "created_at")
RESULT_COLUMNS = ("job_id", "data", "created_at")


def event_row(
    job_id: uuid.UUID,
    kind: str,
    *,
    attempt: int = 0,
    worker: str | None = None,
    detail: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One `job_events` row as insert parameters (EVENT_COLUMNS)."""
    return {"job_id": job_id, "kind": kind, "attempt": attempt, "worker": worker, "detail": detail,
            "created_at": now or utcnow()}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Claim:
    """One attempt's claim of a queued job, until `lease_until`."""

    job_id: uuid.UUID
    worker: str
    lease_until: datetime
    now: datetime

    def params(self) -> dict[str, Any]:
        return {"b_claim_id": self.job_id, "b_now": self.now, "b_lease_until": self.lease_until,
                "b_worker": self.worker}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Completion:
    """An attempt's success with its result `data`, if the attempt still owns the job."""

    job_id: uuid.UUID
    attempt: int
    worker: str
    data: dict[str, Any]
    now: datetime

    def params(self) -> dict[str, Any]:
        return {"b_job_id": self.job_id, "b_attempt": self.attempt, "b_now": self.now, "b_worker": self.worker,
                "b_data": self.data}  # fmt: skip


@dataclass(frozen=True, slots=True)
class StepCount:
    """The workflow step a job's success counts on (core/workflows/advance.py)."""

    workflow_id: uuid.UUID
    step: str

    def params(self) -> dict[str, Any]:
        return {"b_workflow": self.workflow_id, "b_step": self.step}


def unfinished_on_step() -> Any:
    """A step row's jobs not finished yet."""
    return STEPS.c.jobs_total - STEPS.c.jobs_succeeded - STEPS.c.jobs_failed - STEPS.c.jobs_cancelled


def workflow_locked() -> Any:
    """The workflow's row, locked (bind b_workflow): taken before its steps' rows by every writer of them."""
    return select(WORKFLOWS.c.id).where(WORKFLOWS.c.id == bindparam("b_workflow")).with_for_update().cte("locked")


@functools.cache
def step_left_locked() -> Any:
    """The workflow's lock, then its step's row lock, in that order (the order every writer of a workflow takes them,
    core/workflows/advance.py): how many of the step's jobs are unfinished (binds: StepCount.params). A locking read
    returns the newest committed row, whoever held the locks before."""
    locked = workflow_locked()
    return (
        select(unfinished_on_step().label("left"))
        .where(STEPS.c.workflow_id == locked.c.id, STEPS.c.name == bindparam("b_step"))
        .with_for_update(of=STEPS)
    )


@functools.cache
def count_succeeded_on_step() -> Any:
    """One more succeeded job on the step (binds: StepCount.params); its row already locked by step_left_locked."""
    return (
        update(STEPS)
        .where(STEPS.c.workflow_id == bindparam("b_workflow"), STEPS.c.name == bindparam("b_step"))
        .values(jobs_succeeded=STEPS.c.jobs_succeeded + 1)
    )


@functools.cache
def count_succeeded_locked() -> Any:
    """The workflow's lock, then one more succeeded job on its step (binds: StepCount.params), returning how many of
    the step's jobs are left unfinished; no row if the workflow is gone."""
    locked = workflow_locked()
    return count_succeeded_on_step().where(STEPS.c.workflow_id == locked.c.id).returning(unfinished_on_step())


def param(name: str, column: str) -> Any:
    """A bind named b_<name>: a parameter named like a column would also be SET by an UPDATE it is passed to."""
    return bindparam(f"b_{name}", type_=JOBS.c[column].type)


# What a claim returns: the job as its handler needs it, and when it became due (for the queue-wait metric).
CLAIMED = (
    "type",
    "queue",
    "payload",
    "attempt",
    "max_attempts",
    "tenant_id",
    "request_id",
    "workflow_id",
    "workflow_step",
    "due_at",
)


class Completed(NamedTuple):
    """What a completion returns: the job's type and queue (for the job counters)."""

    type: str
    queue: str


@functools.cache
def claim_update() -> Any:
    """Claim a queued job for one attempt (binds: Claim.params), returning its id and CLAIMED."""
    now = param("now", "updated_at")
    # The claimable statuses as literals: a list of values is an expanding IN, rendered again on every execution.
    claimable = [literal(status, JOBS.c.status.type) for status in sources_of(S.RUNNING)]
    return (
        update(JOBS)
        .where(
            JOBS.c.id == param("claim_id", "id"),
            JOBS.c.status.in_(claimable),
            JOBS.c.cancel_requested.is_(False),
            or_(JOBS.c.expires_at.is_(None), JOBS.c.expires_at > now),  # an expired job is the reconciler's
            ~paused(),  # a paused queue keeps its jobs queued
        )
        .values(
            status=S.RUNNING.value,
            attempt=JOBS.c.attempt + 1,
            lease_until=param("lease_until", "lease_until"),
            worker=param("worker", "worker"),
            started_at=now,
            updated_at=now,
            progress_done=None,
            progress_total=None,
            progress_message=None,
        )
        .returning(JOBS.c.id, *(JOBS.c[name] for name in CLAIMED[:-1]), due_at().label("due_at"))
    )


def paused() -> Any:
    """EXISTS a pause of the job's queue for its tenant or for all (core/queue_ops.py): two primary-key probes of a
    table of a few rows. In the claim itself, so a pause stops claims at once, whatever a worker has cached."""
    return (
        select(PAUSES.c.queue)
        .where(PAUSES.c.queue == JOBS.c.queue, PAUSES.c.tenant_id.in_([JOBS.c.tenant_id, literal(ALL_TENANTS)]))
        .exists()
    )


def due_at() -> Any:
    """When a job became due: a retry at its backoff's end (a manual retry sets next_attempt_at to its time too), a
    delayed job at run_at, any other at its creation."""
    return func.coalesce(JOBS.c.next_attempt_at, JOBS.c.run_at, JOBS.c.created_at)


def owned(job_id: Any, attempt: Any) -> Any:
    """The condition that this attempt still owns the running job (its lease was not taken over). On the ORM's
    attributes, so that an ORM UPDATE can also apply it to the session's loaded rows."""
    return (Job.id == job_id) & (Job.status == S.RUNNING.value) & (Job.attempt == attempt)


@functools.cache
def complete_update() -> Any:
    """Success, if this attempt still owns the running job (binds: Completion.params), returning its id and
    its Completed columns."""
    now = param("now", "updated_at")
    return (
        update(JOBS)
        .where(owned(param("job_id", "id"), param("attempt", "attempt")))
        .values(status=S.SUCCEEDED.value, finished_at=now, updated_at=now, lease_until=None, error=None)
        .returning(JOBS.c.id, JOBS.c.type, JOBS.c.queue)
    )


@functools.cache
def insert_into(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> str:
    """`INSERT INTO table (columns)`, quoted for the dialect."""
    quote = dialect.identifier_preparer.quote
    return f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))})"


def driver_values(
    dialect: Dialect, table: Table, columns: Sequence[str], rows: Sequence[dict[str, Any]]
) -> list[list[Any]]:
    """Each column's values, as the driver takes them. Statements run as driver SQL skip SQLAlchemy's parameter
    handling (a sixth of a POST's CPU, ADR 0012), so each value goes through its column type's bind processor here,
    as SQLAlchemy's own inserts do (UTC checks, JSON adaptation)."""
    values = []
    for name in columns:
        process = _bind_processor(dialect, table, name)
        column = [row[name] for row in rows]
        values.append(column if process is None else [process(v) for v in column])
    return values


@functools.cache
def _bind_processor(dialect: Dialect, table: Table, name: str) -> Any:
    return table.c[name].type.dialect_impl(dialect).bind_processor(dialect)


@functools.cache
def sql_type(dialect: Dialect, table: Table, name: str) -> str:
    return str(table.c[name].type.dialect_impl(dialect).compile(dialect=dialect))
