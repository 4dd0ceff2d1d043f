"""The engine's connection handling on both backends: pings of idle connections, and read-only units of work."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session

from core.db import (
    PING_AFTER_IDLE_SECONDS,
    SQLITE_BUSY_TIMEOUT_MS,
    make_engine,
    make_sessionmaker,
    reading,
    single_statement,
)
from core.models import Job
from core.types import utcnow
from tests.core.factories import queued_job_row
from tests.support.backends import ADMIN_DATABASE_URL
from worker.unit_of_work import JobUnitOfWork


def test_an_idle_connection_whose_server_side_died_is_replaced(clean_db: Engine, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("a SQLite connection has no server side")
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            first = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        admin = make_engine(ADMIN_DATABASE_URL)
        with admin.connect() as conn:  # what a database restart or an idle-session timeout does
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first}).scalar_one()
        admin.dispose()
        time.sleep(PING_AFTER_IDLE_SECONDS + 0.2)
        with engine.connect() as conn:  # no OperationalError: the ping found it dead and the pool reconnected
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != first
    finally:
        engine.dispose()


def test_a_read_waits_for_no_writer(clean_db: Engine) -> None:
    """A GET must not queue behind a long write: on SQLite a read-only session does not take the write lock, on
    PostgreSQL it runs in autocommit (no transaction held open between statements)."""
    with clean_db.connect() as writer:
        writer.execute(insert(Job), [queued_job_row()])  # uncommitted: on SQLite this transaction holds the write lock
        with make_sessionmaker(reading(clean_db))() as session:
            assert session.scalar(select(func.count()).select_from(Job)) == 0  # committed state only
            if clean_db.dialect.name == "postgresql":
                assert session.connection().connection.dbapi_connection.info.transaction_status.name == "IDLE"
        writer.commit()
    with make_sessionmaker(reading(clean_db))() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 1


def transaction_ids(session: Session) -> set[int]:
    """txid_current() twice: one id inside a transaction, two when each statement commits itself."""
    return {session.scalar(text("SELECT txid_current()")) for _ in range(2)}


def test_a_single_statement_unit_runs_in_autocommit_on_postgresql_only(clean_db: Engine, database_url: str) -> None:
    """The API's group of plain submits: no BEGIN/COMMIT round trips on PostgreSQL; the connection is back to
    transactions afterwards, and a session that already holds a transaction keeps it."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no txid; single_statement leaves its sessions alone")
    with Session(bind=clean_db) as session:
        with single_statement(session) as autocommit:
            assert autocommit and len(transaction_ids(session)) == 2  # each statement its own transaction
            session.commit()
        with session.begin():
            assert len(transaction_ids(session)) == 1  # afterwards, an ordinary transaction again
        session.scalar(text("SELECT 1"))  # the session holds a transaction now (autobegin)
        with single_statement(session) as autocommit:
            assert not autocommit and len(transaction_ids(session)) == 1  # left as it was: the caller's transaction
        session.rollback()


def test_a_job_unit_stays_in_autocommit_until_the_handler_asks_for_a_transaction(database_url: str) -> None:
    """A worker's delivery on PostgreSQL: the job engine's connections stay in autocommit (the claim and the
    completion commit themselves); ctx.session turns the unit into one transaction, once, and the pool returns the
    connection in autocommit."""
    if not database_url.startswith("postgresql"):
        pytest.skip("the job engine is the ordinary engine on SQLite: every step is a transaction")
    engine = make_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            unit = JobUnitOfWork(connection)
            assert unit.autocommit
            with unit.step() as session:
                assert len(transaction_ids(session)) == 2
            session = unit.transaction()
            assert not unit.autocommit and len(transaction_ids(session)) == 1  # the handler's transaction
            assert unit.transaction() is session and len(transaction_ids(session)) == 1  # still the same one
            unit.finish(True)
            unit.close()
        with engine.connect() as connection:
            assert JobUnitOfWork(connection).autocommit
    finally:
        engine.dispose()


def test_a_job_unit_on_sqlite_runs_every_step_as_a_transaction(clean_db: Engine, database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL: the test above")
    with clean_db.connect() as connection:
        unit = JobUnitOfWork(connection)
        assert not unit.autocommit
        with unit.step() as session:
            session.execute(insert(Job), [queued_job_row()])
        unit.transaction().execute(insert(Job), [queued_job_row()])
        unit.finish(False)  # rolled back: the second row only
        assert unit.session.scalar(select(func.count()).select_from(Job)) == 1
        unit.close()


def test_a_single_statement_unit_commits_its_work_on_both_backends(clean_db: Engine) -> None:
    with Session(bind=clean_db) as session:
        with single_statement(session):
            session.execute(insert(Job), [queued_job_row()])
            session.commit()
        assert session.scalar(select(func.count()).select_from(Job)) == 1


@pytest.mark.parametrize("hold_seconds", [0.03, 0.3])
def test_a_sqlite_writer_waits_for_the_write_lock_and_keeps_its_busy_timeout(
    clean_db: Engine, database_url: str, hold_seconds: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the write lock: the write transaction waits (tries of its own for BUSY_SPIN_SECONDS,
    then SQLite's busy handler) and commits once the lock is free; every other statement keeps the busy timeout."""
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL locks rows, not the database")
    monkeypatch.setattr("core.db.BUSY_SPIN_SECONDS", 0.1)  # the longer hold outlasts the tries: the fallback waits
    other = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # what a worker's transaction in another process holds
    other.execute("PRAGMA user_version=7")  # written by that transaction: visible once it has committed
    release = threading.Timer(hold_seconds, other.commit)
    release.start()
    try:
        with Session(clean_db) as session, session.begin():
            pragma = session.connection().exec_driver_sql
            assert pragma("PRAGMA user_version").scalar() == 7  # it began only once the other transaction ended
            session.execute(insert(Job), [queued_job_row(utcnow())])
            assert pragma("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
            pragma("PRAGMA user_version=0")
        with Session(clean_db) as session:
            assert session.scalar(select(func.count()).select_from(Job)) == 1
    finally:
        release.cancel()
        other.close()
