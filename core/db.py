"""The one engine per process and its session factory; SQLite gets WAL, a busy timeout and foreign keys."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Tries for SQLite's write lock: pauses in seconds, and how long before SQLite's own busy handler takes over.
BUSY_FIRST_PAUSE, BUSY_LONGEST_PAUSE, BUSY_SPIN_SECONDS = 0.00025, 0.002, 1.0
READ_ONLY = "conveyor_read_only"  # execution option: this connection's transactions only read
# The database went away (restart, failover, network): worth another attempt, unlike a bad input.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, ConnectionError)
# A pooled connection used this recently is handed out without a ping (HikariCP's aliveBypassWindowMs is 500 ms):
# the ping was a round trip on every request, a sixth of a GET's time.
PING_AFTER_IDLE_SECONDS = 0.5
# SQLite: the maintenance tick copies the WAL into the database file (checkpoint_wal); a connection that commits past
# this many WAL pages (80 MB) does it itself, in case no maintenance process runs. SQLite's default, 1,000 pages,
# checkpointed every 80 jobs on the committing worker's time: a fifth of a job's time in a 1,000,000-job ledger.
SQLITE_AUTOCHECKPOINT_PAGES = 20_000


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create the process's engine. Nothing connects until the first query."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        _configure_sqlite(engine)
        return engine
    engine = create_engine(url, **kwargs)
    _ping_idle_connections(engine)
    return engine


def reading(engine: Engine) -> Engine:
    """The engine (same pool) for units of work that only read, such as GET requests. PostgreSQL runs their
    statements in autocommit: no BEGIN and ROLLBACK round trips, and read committed gives each statement its own
    snapshot either way. SQLite takes a deferred BEGIN, so that in WAL mode a read waits for no writer."""
    if is_sqlite(engine):
        return engine.execution_options(**{READ_ONLY: True})
    return engine.execution_options(isolation_level="AUTOCOMMIT")


@contextlib.contextmanager
def single_statement(session: Session) -> Iterator[bool]:
    """Around an API unit of work that is one statement, atomic on its own (a group of plain submits: one DML-in-CTE
    statement on PostgreSQL): the session takes its connection in autocommit, without the BEGIN and COMMIT round
    trips; the pool resets it as it is returned. The caller still commits: on SQLite (which runs that work as
    several statements), or when the session already holds a transaction, nothing changes. Yields whether the
    statement runs in autocommit. (A worker's job owns its connection: worker/unit_of_work.py.)"""
    bind = session.bind
    if isinstance(bind, Engine) and bind.dialect.name == "postgresql" and not session.in_transaction():
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield True
        return
    yield False


def connection_autocommit(connection: Connection) -> bool:
    """Whether a PostgreSQL connection is in autocommit (psycopg's own flag: no round trip)."""
    dbapi_connection = connection.connection.dbapi_connection
    return connection.dialect.name == "postgresql" and getattr(dbapi_connection, "autocommit", False) is True


Sessions = Callable[[], Session]  # what makes a session of its own: a sessionmaker, in a caller that commits


def make_sessionmaker(engine: Engine, *, info: dict[str, Any] | None = None) -> sessionmaker[Session]:
    """`info`: what every session of the process carries (the workflows' Releaser, core/workflows/advance.py)."""
    return sessionmaker(engine, expire_on_commit=False, info=info)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _ping_idle_connections(engine: Engine) -> None:
    """Pessimistic disconnect handling, as pool_pre_ping, but only for connections idle past
    PING_AFTER_IDLE_SECONDS: one that fails its ping is replaced before the caller gets it (after a database
    restart, say); a DisconnectionError makes the pool discard it and check out another."""

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _mark_used(_dbapi_connection: Any, record: Any) -> None:
        record.info["used_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("used_at", 0.0) < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"a pooled connection failed its ping: {exc}") from exc


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see the "begin" hook).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A deferred transaction that reads and then writes fails with SQLITE_BUSY at once (no busy wait) when
        # another process committed in between; taking the write lock up front makes busy_timeout apply.
        # A long read (an export) says it only reads: WAL lets it run beside the writers instead of blocking them.
        if connection.get_execution_options().get(READ_ONLY, False):
            connection.exec_driver_sql("BEGIN")
        else:
            begin_immediate(connection)


def checkpoint_wal(engine: Engine) -> int:
    """SQLite: copy the pages committed to the WAL into the database file, PASSIVE (beside the readers and writers,
    waiting for none of them), so that no worker does it on a job's time. Returns the pages copied (0 on PostgreSQL).
    With `synchronous=NORMAL` a commit is durable against a process crash at once and against a power loss from the
    checkpoint that follows it: this one, every maintenance tick."""
    if not is_sqlite(engine):
        return 0
    raw = engine.raw_connection()  # the driver's connection, in autocommit: a checkpoint runs outside a transaction
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
        _busy, _frames, copied = cursor.fetchone() or (0, 0, 0)  # (a PRAGMA checkpoint always answers a row)
        cursor.close()
    finally:
        raw.close()
    return max(int(copied), 0)


def begin_immediate(connection: Connection) -> None:
    """BEGIN IMMEDIATE, trying again BUSY_FIRST_PAUSE later while another process holds the write lock, then twice as
    long each time up to BUSY_LONGEST_PAUSE, for BUSY_SPIN_SECONDS; then with SQLite's own busy handler for the rest
    of its timeout. That handler sleeps 1, 2, 5, 10, 15, 20, 25 … ms between tries: the other writers hold the lock
    for well under a millisecond, yet under load a worker process's waits averaged 9.6 ms and it slept most of its
    time."""
    if not _begin_immediate_soon(connection.connection.dbapi_connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # (and a failure reported as SQLAlchemy reports it)


def _begin_immediate_soon(dbapi_connection: Any) -> bool:
    dbapi_connection.execute("PRAGMA busy_timeout=0")  # SQLITE_BUSY at once; every other statement keeps the timeout
    try:
        deadline = time.monotonic() + BUSY_SPIN_SECONDS
        pause = BUSY_FIRST_PAUSE
        while True:
            try:
                dbapi_connection.execute("BEGIN IMMEDIATE")
                return True
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    return False
            time.sleep(pause)
            pause = min(pause * 2, BUSY_LONGEST_PAUSE)
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
