"""The reconciler's tick reads the whole backlog (lost messages, the quotas' counts, the gauges) once per
`backlog_interval`; its other work reads only the rows that are due, every tick."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.db import SQLITE_AUTOCHECKPOINT_PAGES
from core.models import JobEvent, TenantUsage
from core.queue import RecordingPublisher, make_celery
from core.registry import load_registry
from core.settings import Settings
from core.status import JobStatus
from core.types import utcnow
from tests.core.factories import insert_job
from worker.maintenance import run_reconcile
from worker.runtime import WorkerRuntime


class EmptyBroker(RecordingPublisher):
    """A broker that lost every message."""

    def queue_depth(self, _queue: str) -> int:
        return 0


@pytest.fixture
def runtime(clean_db: Engine, database_url: str, tmp_path: Path) -> Iterator[WorkerRuntime]:
    settings = Settings(data_dir=tmp_path, database_url=database_url, backlog_interval=3600)
    runtime = WorkerRuntime(settings, load_registry(), make_celery(settings, name="test"))
    runtime.publisher = EmptyBroker()  # type: ignore[assignment]
    yield runtime
    runtime.close()


def republished(session: Session, job_id: uuid.UUID) -> bool:
    kinds = session.scalars(select(JobEvent.kind).where(JobEvent.job_id == job_id)).all()
    session.rollback()
    return "republished" in kinds


def usage(session: Session) -> int | None:
    counted = session.scalar(select(func.sum(TenantUsage.active_jobs)))
    session.rollback()
    return counted


def test_the_whole_backlog_is_read_once_per_backlog_interval(runtime: WorkerRuntime, session: Session) -> None:
    hour_ago = utcnow() - timedelta(hours=1)
    first = insert_job(session, JobStatus.QUEUED, now=hour_ago).id
    assert run_reconcile(runtime)["backlog_read"]
    assert republished(session, first) and usage(session) == 1

    second = insert_job(session, JobStatus.QUEUED, now=hour_ago).id
    assert not run_reconcile(runtime)["backlog_read"]
    assert not republished(session, second) and usage(session) == 1  # left for the next read of the backlog

    runtime.backlog_read_at -= runtime.settings.backlog_interval
    assert run_reconcile(runtime)["backlog_read"]
    assert republished(session, second) and usage(session) == 2


def test_the_tick_checkpoints_sqlites_wal_so_that_the_job_path_need_not(
    runtime: WorkerRuntime, session: Session
) -> None:
    """Job-path connections leave the WAL to the tick (up to SQLITE_AUTOCHECKPOINT_PAGES); the tick copies it into
    the database file. PostgreSQL has nothing to checkpoint."""
    for _ in range(50):
        insert_job(session, JobStatus.QUEUED)
    checkpointed = run_reconcile(runtime)["wal_pages_checkpointed"]
    if session.get_bind().dialect.name != "sqlite":
        assert checkpointed == 0
        return
    assert session.connection().exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == SQLITE_AUTOCHECKPOINT_PAGES
    session.rollback()
    assert checkpointed > 0  # the 50 jobs' pages, which no commit of theirs checkpointed
