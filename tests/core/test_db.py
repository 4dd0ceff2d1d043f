"""The engine's connection handling on both backends: pings of idle connections, and read-only units of work."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, func, insert, select, text

from core.db import PING_AFTER_IDLE_SECONDS, make_engine, make_sessionmaker, reading
from core.models import Job
from tests.core.factories import queued_job_row
from tests.support.backends import ADMIN_DATABASE_URL


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
