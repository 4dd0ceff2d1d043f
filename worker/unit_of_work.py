"""A delivery's unit of work: the one owner of a worker job's database session, transaction and connection.

One pooled connection of the job engine serves a whole delivery (one checkout, so one pre-ping at most). How its
statements commit is decided once, when the unit opens, from that connection:

- PostgreSQL: the job engine's connections are in autocommit (WorkerRuntime.job_engine), and the claim and the
  completion are single statements (a CTE each), so each commits itself without BEGIN and COMMIT round trips, which
  were two thirds of a delivery's waits for the database (ADR 0007). A handler that asks for `ctx.session` turns the
  unit into one transaction, once: its writes then commit together with the result, or not at all.
- SQLite: every step is a transaction (the claim and the completion are several statements there).

The pool puts a connection back in its engine's isolation level when it is returned.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.db import connection_autocommit

PLAIN_SESSIONS = functools.partial(Session, expire_on_commit=False)


class JobUnitOfWork:
    def __init__(self, connection: Connection, sessions: Callable[..., Session] = PLAIN_SESSIONS) -> None:
        """`sessions`: the process's sessionmaker (core.publish.process_sessions), bound here to the connection."""
        self._connection = connection
        self._session = sessions(bind=connection)
        self.autocommit = connection_autocommit(connection)  # each statement commits itself (PostgreSQL)

    @contextlib.contextmanager
    def step(self) -> Iterator[Session]:
        """One step that stands on its own, committed at its end (the claim)."""
        with self._session.begin():
            yield self._session

    @property
    def session(self) -> Session:
        """The session the completion runs in: in autocommit until the handler asked for a transaction."""
        return self._session

    def transaction(self) -> Session:
        """The session for a handler's own writes (`ctx.session`): from now on the unit is one transaction, which
        `finish` commits with the result."""
        if self.autocommit:
            if self._session.in_transaction():  # statements ran in autocommit, each committed already: this only
                self._session.commit()  # ends the session's own bookkeeping, which must not span the switch
            self._connection.execution_options(isolation_level=self._connection.default_isolation_level)
            self.autocommit = False
        return self._session

    def finish(self, completed: bool) -> None:
        """End the unit after the completion: commit what it did, or roll it back (the lease was lost). In
        autocommit the completion committed itself and there is nothing to undo."""
        (self._session.commit if completed else self._session.rollback)()

    def discard(self) -> None:
        """Give up the unit before the outcome is recorded in a fresh session (on SQLite this also releases the
        write lock that session needs). A broken connection must not mask the real error."""
        with contextlib.suppress(SQLAlchemyError):
            self._session.rollback()

    def close(self) -> None:
        self._session.close()
