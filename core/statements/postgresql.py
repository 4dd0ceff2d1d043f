"""PostgreSQL's hot-path statements: each write and its events in one statement, one round trip.

PostgreSQL runs INSERT/UPDATE … RETURNING inside WITH, and every data-modifying CTE to completion whether or not the
outer SELECT reads it; the events' foreign keys are checked at the statement's end.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, Dialect, Table, bindparam, exists, insert, literal, select, true

from core.statements.shared import (
    CLAIMED,
    EVENT_COLUMNS,
    EVENTS,
    JOB_COLUMN_KEYS,
    JOBS,
    RESULTS,
    STEPS,
    Claim,
    Completed,
    Completion,
    StepCount,
    claim_update,
    complete_update,
    count_succeeded_on_step,
    driver_values,
    insert_into,
    param,
    sql_type,
    step_left_locked,
)
from core.status import JobStatus

S = JobStatus
ONE_STATEMENT_SUBMIT = True
STEPS_NAME = STEPS.c.name


def claim(connection: Connection, to_claim: Claim) -> Any | None:
    """The claim and its `running` event; the claimed row (CLAIMED), or None if the job was not claimable."""
    return connection.execute(_claim(), to_claim.params()).one_or_none()


def complete(connection: Connection, done: Completion) -> Completed | None:
    """Success, result and `succeeded` event; None (nothing written) if the attempt no longer owns the job."""
    row = connection.execute(_complete(), done.params()).one_or_none()
    return None if row is None else Completed(row.type, row.queue)


def complete_and_claim(
    connection: Connection, done: Completion, to_claim: Claim
) -> tuple[Completed | None, Any | None]:
    """`complete`, then `claim` of another job, in one statement: (what was completed, the claimed row)."""
    row = connection.execute(_complete_and_claim(), done.params() | to_claim.params()).one_or_none()
    if row is None:  # neither: the attempt lost its job, and the next one is not claimable
        return None, None
    completed = None if row.done_id is None else Completed(row.done_type, row.done_queue)
    return completed, None if row.attempt is None else row


def complete_counted(
    connection: Connection, done: Completion, count: StepCount, to_claim: Claim | None
) -> tuple[Completed | None, Any | None]:
    """A workflow job's success counted on its step, with the next job's claim, in one statement, only if it is not
    the step's last unfinished job: (None, None) and nothing written otherwise (or if the attempt lost its job),
    and the caller takes the transaction that releases what follows (core/workflows/advance.py)."""
    params = done.params() | count.params() | (to_claim.params() if to_claim else {})
    row = connection.execute(_complete_counted(to_claim is not None), params).one_or_none()
    if row is None or row.done_id is None:
        return None, None
    return Completed(row.done_type, row.done_queue), None if to_claim is None or row.attempt is None else row


def insert_jobs(connection: Connection, jobs: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    """The plain jobs' rows (column → value) and the created jobs' events, as one statement: the jobs in a CTE,
    the events in its INSERT. Many rows go in as one array per column (INSERT … SELECT * FROM unnest(…)): the same
    short statement for two rows or a thousand, which psycopg parses once and PostgreSQL can prepare. A lone POST's
    row is a VALUES row of the same parameters: psycopg walks every list for its element type (ADR 0012)."""
    dialect = connection.dialect
    alone = len(events) == 1  # then `jobs` holds at most that one job
    params = _params(dialect, EVENTS, EVENT_COLUMNS, events, "e_", alone=alone)
    if jobs:
        params |= _params(dialect, JOBS, JOB_COLUMN_KEYS, jobs, "j_", alone=alone)
    connection.exec_driver_sql(_insert_sql(dialect, alone=alone, with_jobs=bool(jobs)), params)


@functools.cache
def _claim() -> Any:
    claimed = claim_update().cte("claimed")
    event = _event_of(claimed, S.RUNNING.value, claimed.c.attempt).cte("claim_event")
    return select(*_claimed_columns(claimed)).add_cte(event)


@functools.cache
def _complete() -> Any:
    done, result, event = _completion()
    return select(done.c.type, done.c.queue).add_cte(result).add_cte(event)


@functools.cache
def _complete_and_claim() -> Any:
    """The two touch different rows; the FULL JOIN of the two one-row CTEs answers one row when either happened."""
    done, result, done_event = _completion()
    claimed = claim_update().cte("claimed")
    claim_event = _event_of(claimed, S.RUNNING.value, claimed.c.attempt).cte("claim_event")
    both = done.join(claimed, true(), full=True)
    done_columns = (done.c.id.label("done_id"), done.c.type.label("done_type"), done.c.queue.label("done_queue"))
    query = select(*done_columns, *_claimed_columns(claimed)).select_from(both)
    return query.add_cte(result).add_cte(done_event).add_cte(claim_event)


@functools.cache
def _complete_counted(with_claim: bool) -> Any:
    """The workflow's and the step's locks (in that order), then the success if the step has other unfinished jobs,
    its count on the step, and the next job's claim, each only if the success happened."""
    step = step_left_locked().cte("step")
    done, result, done_event = _completion(select(step.c.left).scalar_subquery() > 1)
    happened = exists(select(done.c.id))
    counted = count_succeeded_on_step().where(happened).returning(STEPS_NAME).cte("counted")
    done_columns = (done.c.id.label("done_id"), done.c.type.label("done_type"), done.c.queue.label("done_queue"))
    if not with_claim:
        return select(*done_columns).add_cte(result).add_cte(done_event).add_cte(counted)
    claimed = claim_update().where(happened).cte("claimed")
    claim_event = _event_of(claimed, S.RUNNING.value, claimed.c.attempt).cte("claim_event")
    query = select(*done_columns, *_claimed_columns(claimed)).select_from(done.join(claimed, true(), full=True))
    return query.add_cte(result).add_cte(done_event).add_cte(counted).add_cte(claim_event)


def _completion(condition: Any = None) -> tuple[Any, Any, Any]:
    """Success (if `condition` holds too), its result and its event as CTEs."""
    update = complete_update() if condition is None else complete_update().where(condition)
    done = update.cte("done")
    result = insert(RESULTS).from_select(
        ["job_id", "data", "created_at"],
        select(done.c.id, bindparam("b_data", type_=RESULTS.c.data.type), param("now", "updated_at")),
    )
    event = _event_of(done, S.SUCCEEDED.value, param("attempt", "attempt"))
    return done, result.cte("result"), event.cte("done_event")


def _event_of(source: Any, kind: str, attempt: Any) -> Any:
    """INSERT INTO job_events SELECT … FROM a DML CTE: one event per row the CTE touched (binds: b_worker, b_now)."""
    return insert(EVENTS).from_select(
        ["job_id", "kind", "attempt", "worker", "created_at"],
        select(source.c.id, literal(kind, EVENTS.c.kind.type), attempt, param("worker", "worker"),
               param("now", "updated_at")),
    )  # fmt: skip


def _claimed_columns(claimed: Any) -> list[Any]:
    return [claimed.c[name] for name in CLAIMED]


def _params(
    dialect: Dialect, table: Table, columns: tuple[str, ...], rows: list[dict[str, Any]], prefix: str, *, alone: bool
) -> dict[str, Any]:
    values = driver_values(dialect, table, columns, rows)
    return {f"{prefix}{name}": column[0] if alone else column for name, column in zip(columns, values, strict=True)}


@functools.cache
def _insert_sql(dialect: Dialect, *, alone: bool, with_jobs: bool) -> str:
    events = _rows_insert(dialect, EVENTS, EVENT_COLUMNS, "e_", alone=alone)
    if not with_jobs:
        return events
    jobs = _rows_insert(dialect, JOBS, JOB_COLUMN_KEYS, "j_", alone=alone)
    return f"WITH new_jobs AS ({jobs} RETURNING id) {events}"


def _rows_insert(dialect: Dialect, table: Table, columns: tuple[str, ...], prefix: str, *, alone: bool) -> str:
    """`INSERT INTO table (columns) VALUES (%(<prefix><column>)s::<type>, …)` for one row, or `… SELECT * FROM
    unnest(%(<prefix><column>)s::<type>[], …)` for arrays of them."""
    binds = [f"%({prefix}{name})s::{sql_type(dialect, table, name)}" for name in columns]
    if alone:
        return f"{insert_into(dialect, table, columns)} VALUES ({', '.join(binds)})"
    arrays = ", ".join(f"{bind}[]" for bind in binds)
    return f"{insert_into(dialect, table, columns)} SELECT * FROM unnest({arrays})"  # noqa: S608 - metadata names
