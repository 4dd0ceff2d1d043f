"""The hot path's SQL: one module per database, with the same functions, each reading top to bottom.

    claim(connection, to_claim)                     the claim of a queued job and its `running` event
    complete(connection, done)                      success, its result and its `succeeded` event
    complete_and_claim(connection, done, to_claim)  both, in one unit of work (a shared message's next job)
    complete_counted(connection, done, count, to_claim)  a workflow job's success counted on its step (and the
                                                    claim of the next job), unless it is the step's last
    insert_jobs(connection, jobs, events)           a submit's rows: plain jobs and every created job's event
    ONE_STATEMENT_SUBMIT                            whether insert_jobs is a single statement (may run in autocommit)

`postgresql` writes each of them as one statement (data-modifying CTEs, one round trip); `sqlite`, which has no DML
in CTEs, as the same statements one after another in the caller's transaction. Both take the session's Core
connection and never commit (core.jobs and core.submit call them inside the caller's unit of work). The statements
are built once, with bind parameters: a profile of a worker delivery spent a third of its time building, hashing and
ORM-wrapping them on every call (ADR 0004).
"""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from core.statements import postgresql, sqlite
from core.statements.shared import Claim, Completed, Completion, StepCount


class Statements(Protocol):
    ONE_STATEMENT_SUBMIT: bool

    def claim(self, connection: Connection, to_claim: Claim) -> Any | None: ...

    def complete(self, connection: Connection, done: Completion) -> Completed | None: ...

    def complete_and_claim(
        self, connection: Connection, done: Completion, to_claim: Claim
    ) -> tuple[Completed | None, Any | None]: ...

    def complete_counted(
        self, connection: Connection, done: Completion, count: StepCount, to_claim: Claim | None
    ) -> tuple[Completed | None, Any | None]: ...

    def insert_jobs(self, connection: Connection, jobs: list[dict[str, Any]], events: list[dict[str, Any]]) -> None: ...


def of(session: Session) -> Statements:
    """The statements of the session's database."""
    return postgresql if session.get_bind().dialect.name == "postgresql" else sqlite


__all__ = ["Claim", "Completed", "Completion", "Statements", "StepCount", "of"]
