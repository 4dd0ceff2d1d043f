"""Every query the reconciler, the pruner, the queue views and operations and the failed-job retry run on `jobs`
reads a range of an index, never the whole table or a whole index that grows with the ledger. The statements are the
ones the code really sends (captured as it runs against rows in every state), each explained on the database it ran
on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text, update
from sqlalchemy.orm import Session

from core.db import make_sessionmaker
from core.models import Job
from core.queries import JobFilter, last_hour_by_minute, list_jobs, queue_stats
from core.queue import RecordingPublisher
from core.queue_ops import FailedFilter, drain_queue, pause_queue, resume_queue, retry_failed
from core.reconcile import reconcile, release_jobs_of
from core.registry import load_registry
from core.retention import Retention, prune
from core.status import JobStatus
from core.types import utcnow
from tests.core.factories import insert_job

S = JobStatus
# Partial indexes bounded by the rows of a status (or unfinished ones): reading one whole is reading the backlog.
BOUNDED = {"ix_jobs_scheduled_run_at", "ix_jobs_retrying_next_attempt_at", "ix_jobs_running_lease_until",
           "ix_jobs_expiring", "ix_jobs_waiting", "ix_jobs_tenant_active", "ix_jobs_failures"}  # fmt: skip

HISTORY = "ix_jobs_tenant_created"  # every job of a tenant, by creation


@contextmanager
def captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements that read `jobs` (SELECTs, and the WHERE of UPDATEs and DELETEs) sent while the block runs, with
    their parameters."""
    sent: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")) and " jobs" in statement:
            sent.append((statement, parameters[0] if many else parameters))  # executemany: one row's plan

    event.listen(engine, "before_cursor_execute", keep)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", keep)


def plan_lines(engine: Engine, statement: str, parameters: Any) -> list[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return [str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)]
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a small table: the plan an index could give
        return [row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters)]


def unbounded_reads(engine: Engine, statement: str, parameters: Any) -> list[str]:
    """The plan's reads of `jobs` that are not a range of an index: a table scan, a whole index that is not one of
    the BOUNDED partial ones, or a range of the tenant's whole history (ix_jobs_tenant_created, which only the job
    list may read, a page at a time)."""
    lines = plan_lines(engine, statement, parameters)
    history = [line for line in lines if HISTORY in line]
    if engine.dialect.name == "sqlite":
        scans = [line for line in lines if line.startswith("SCAN jobs")]
        return history + [line for line in scans if not any(f"INDEX {name}" in line for name in BOUNDED)]
    found = history
    for index, line in enumerate(lines):
        if "Seq Scan on jobs" in line:
            found.append(line)
        elif " on jobs" in line and "Index" in line and not any(name in line for name in BOUNDED):
            detail = lines[index + 1 : index + 3]
            if not any("Index Cond" in d for d in detail):
                found.append(line)
    return found


@pytest.fixture
def every_state(session: Session) -> Session:
    """Rows the scans below must find: in every status, due and not, with expiries and a stopped worker."""
    now = utcnow()
    past, future = now - timedelta(hours=1), now + timedelta(hours=1)
    for status in S:
        for when in (past, future):
            job = insert_job(session, status, now=when, lease_until=when)
            finished = when if status in (S.SUCCEEDED, S.FAILED, S.CANCELLED) else None
            session.execute(update(Job).where(Job.id == job.id).values(
                expires_at=when, finished_at=finished, published_at=None if when is future else past))  # fmt: skip
    session.commit()
    # with statistics, as the reconciler's tick gives them (core/planner_stats.py; too few rows here for its rule)
    session.execute(text("ANALYZE jobs"))
    session.commit()
    return session


def run_reconciler(session: Session, _engine: Engine) -> None:
    reconcile(session, republish_after=0, backoff_cap=60)
    session.rollback()


def run_release(session: Session, _engine: Engine) -> None:
    release_jobs_of(session, ["test@host:"], backoff_cap=60)
    session.rollback()


# Half an hour for every status, and a day for the failed `sleep` jobs: a type with a retention of its own.
RETENTION = Retention({"succeeded": 1 / 48, "failed": 1 / 48, "cancelled": 1 / 48}, {"sleep": {"failed": 1}}, 0)


def run_pruner(_session: Session, engine: Engine) -> None:
    prune(make_sessionmaker(engine), RETENTION, data_dir=Path("/nonexistent"), batch=1, budget_seconds=30)


def run_queue_views(session: Session, _engine: Engine) -> None:
    queue_stats(session, ["default"], tenant_id="default")
    last_hour_by_minute(session, tenant_id="default")
    session.rollback()


def run_failed_retry(_session: Session, engine: Engine) -> None:
    retry_failed(make_sessionmaker(engine), RecordingPublisher(), FailedFilter(tenant_id="default"), limit=1,
                 actor=None)  # fmt: skip


def run_pause_and_resume(session: Session, engine: Engine) -> None:
    pause_queue(session, "default", tenant_id="default", actor=None, reason=None)
    session.commit()
    resume_queue(make_sessionmaker(engine), RecordingPublisher(), "default", tenant_id="default",
                 registry=load_registry(), jobs_per_message=50)  # fmt: skip


def run_drain(_session: Session, engine: Engine) -> None:
    drain_queue(make_sessionmaker(engine), "default", tenant_id="default", actor=None, reason="test")


RUNS: dict[str, Callable[[Session, Engine], None]] = {
    "the reconciler's tick": run_reconciler,
    "the release of a stopped worker's jobs": run_release,
    "the pruner": run_pruner,
    "the queue views": run_queue_views,
    "the retry of failed jobs": run_failed_retry,
    "a queue's resume": run_pause_and_resume,
    "a queue's drain": run_drain,
}


@pytest.mark.parametrize("run", list(RUNS))
def test_every_scan_reads_an_index_range(every_state: Session, clean_db: Engine, run: str) -> None:
    with captured(clean_db) as sent:
        RUNS[run](every_state, clean_db)
    assert sent, "the run sent no query on jobs"
    unbounded = {statement: reads for statement, parameters in sent
                 if (reads := unbounded_reads(clean_db, statement, parameters))}  # fmt: skip
    assert not unbounded, unbounded


def test_the_pruner_above_runs_a_type_rule_too() -> None:
    """RETENTION makes the pruner run a rule of every status and a failed `sleep` jobs' one of their own."""
    assert sorted(rule.status for rule in RETENTION.rules()) == ["cancelled", "failed", "failed", "succeeded"]


@pytest.mark.parametrize("statuses", [["failed"], ["cancelled", "failed"], ["queued"], ["running", "retrying"]])
def test_a_page_of_rare_statuses_reads_their_index_not_the_history(
    every_state: Session, clean_db: Engine, statuses: list[str]
) -> None:
    with captured(clean_db) as sent:
        jobs, _ = list_jobs(every_state, filters=JobFilter(status=statuses, type="echo"), limit=1, tenant_id="default")
    assert jobs and {job.status for job in jobs} <= set(statuses)
    every_state.rollback()
    [(statement, parameters)] = sent
    # the statuses' own rows (ix_jobs_tenant_active, ix_jobs_tenant_unsuccessful, or the waiting jobs'), never a
    # walk through the tenant's history
    assert not unbounded_reads(clean_db, statement, parameters), plan_lines(clean_db, statement, parameters)
