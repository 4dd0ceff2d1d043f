"""SQLite's hot-path statements: SQLite has no DML in CTEs, so each write and its events are statements one after
another, in the caller's transaction (one transaction per delivery, as on PostgreSQL one statement)."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, Dialect, Table

from core.statements.shared import (
    EVENT_COLUMNS,
    EVENTS,
    JOB_COLUMN_KEYS,
    JOBS,
    RESULT_COLUMNS,
    RESULTS,
    Claim,
    Completed,
    Completion,
    StepCount,
    claim_update,
    complete_update,
    count_succeeded_on_step,
    driver_values,
    event_row,
    insert_into,
    step_left_locked,
)
from core.status import JobStatus

S = JobStatus
ONE_STATEMENT_SUBMIT = False


def claim(connection: Connection, to_claim: Claim) -> Any | None:
    """The claim, then its `running` event; the claimed row (CLAIMED), or None if the job was not claimable."""
    row = _claim(connection, to_claim)
    if row is not None:
        _insert_rows(connection, EVENTS, EVENT_COLUMNS, [_running(to_claim, row)])
    return row


def complete(connection: Connection, done: Completion) -> Completed | None:
    """Success, then its result and `succeeded` event; None (nothing written) if the attempt no longer owns the
    job."""
    completed = _complete(connection, done)
    if completed is not None:
        _insert_rows(connection, EVENTS, EVENT_COLUMNS, [_succeeded(done)])
    return completed


def complete_and_claim(
    connection: Connection, done: Completion, to_claim: Claim
) -> tuple[Completed | None, Any | None]:
    """`complete`, then `claim` of another job, with both events in one INSERT: (what was completed, the claimed
    row)."""
    completed, row = _complete(connection, done), _claim(connection, to_claim)
    events = ([_succeeded(done)] if completed else []) + ([_running(to_claim, row)] if row is not None else [])
    _insert_rows(connection, EVENTS, EVENT_COLUMNS, events)
    return completed, row


def _claim(connection: Connection, to_claim: Claim) -> Any | None:
    """The claim, without its event."""
    return connection.execute(claim_update(), to_claim.params()).one_or_none()


def _complete(connection: Connection, done: Completion) -> Completed | None:
    """The success and its result, without its event."""
    row = connection.execute(complete_update(), done.params()).one_or_none()
    if row is None:
        return None
    _insert_rows(connection, RESULTS, RESULT_COLUMNS, [{"job_id": done.job_id, "data": done.data,
                                                        "created_at": done.now}])  # fmt: skip
    return Completed(row.type, row.queue)


def _running(to_claim: Claim, row: Any) -> dict[str, Any]:
    return event_row(to_claim.job_id, S.RUNNING.value, attempt=row.attempt, worker=to_claim.worker, now=to_claim.now)


def _succeeded(done: Completion) -> dict[str, Any]:
    return event_row(done.job_id, S.SUCCEEDED.value, attempt=done.attempt, worker=done.worker, now=done.now)


def complete_counted(
    connection: Connection, done: Completion, count: StepCount, to_claim: Claim | None
) -> tuple[Completed | None, Any | None]:
    """A workflow job's success counted on its step, with the next job's claim, only if it is not the step's last
    unfinished job: (None, None) and nothing written otherwise (or if the attempt lost its job). The caller's
    transaction holds SQLite's write lock, which is the workflow's lock here."""
    left = connection.execute(step_left_locked(), count.params()).scalar()
    if left is None or left <= 1:
        return None, None
    completed = complete(connection, done)
    if completed is None:
        return None, None
    connection.execute(count_succeeded_on_step(), count.params())
    return completed, None if to_claim is None else claim(connection, to_claim)


def insert_jobs(connection: Connection, jobs: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    """The plain jobs' rows (column → value), then the created jobs' events."""
    _insert_rows(connection, JOBS, JOB_COLUMN_KEYS, jobs)
    _insert_rows(connection, EVENTS, EVENT_COLUMNS, events)


def _insert_rows(connection: Connection, table: Table, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """Plain INSERTs of `rows` (column → value), one executemany: the DB-API's, without SQLAlchemy's per-row
    parameter work (ADR 0012). On the worker's path they run while the transaction holds SQLite's one write lock,
    which the other worker processes wait for: Core INSERTs took a third of the time it was held."""
    if rows:
        dialect = connection.dialect
        values = driver_values(dialect, table, columns, rows)
        connection.exec_driver_sql(_plain_insert(dialect, table, columns), list(zip(*values, strict=True)))


@functools.cache
def _plain_insert(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> str:
    """`INSERT INTO table (columns) VALUES (?, …)`, in SQLite's qmark style."""
    return f"{insert_into(dialect, table, columns)} VALUES ({', '.join('?' * len(columns))})"
