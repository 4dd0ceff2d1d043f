"""The lease heartbeat: a job that never reports progress keeps its lease while it runs, job after job in one
message (one keeper thread per process), on a real database."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.context import JobContext
from core.models import Job
from core.queue import make_celery
from core.registry import JobSpec, Registry
from core.settings import Settings
from core.submit import JobRequest, submit_jobs
from core.types import utcnow
from worker.executor import Delivery, execute_message
from worker.lease import LeaseKeeper
from worker.runtime import WorkerRuntime

LEASE_SECONDS = 0.6


class Nothing(BaseModel):
    pass


def test_a_job_without_progress_keeps_its_lease_past_its_length(
    session: Session, clean_db: Engine, database_url: str, tmp_path: Path
) -> None:
    seen: list[tuple[datetime, datetime]] = []  # (now, lease_until) late in each job, read by another connection

    def nap(_payload: Nothing, ctx: JobContext) -> Nothing:
        time.sleep(LEASE_SECONDS * 2)  # twice the lease, never calling progress()
        with clean_db.connect() as conn:
            lease_until = conn.scalar(select(Job.lease_until).where(Job.id == ctx.job_id))
        assert lease_until is not None
        seen.append((utcnow(), lease_until))
        return Nothing()

    spec = JobSpec(name="nap", payload=Nothing, result=Nothing, handler=nap)
    registry = Registry([spec])
    outcomes = submit_jobs(session, registry=registry, known_queues=["default"],
                           requests=[JobRequest(type="nap", payload={}) for _ in range(2)]).outcomes  # fmt: skip
    session.commit()
    settings = Settings(data_dir=tmp_path, database_url=database_url, lease_seconds=LEASE_SECONDS)
    runtime = WorkerRuntime(settings, registry, make_celery(settings, name="test"))
    try:
        ids = [str(o.job.id) for o in outcomes if o.job is not None]
        assert str(execute_message(runtime, spec, ids, Delivery("test"))) == "2 succeeded"
    finally:
        runtime.close()
    assert len(seen) == 2
    for now, lease_until in seen:  # without renewals each lease would have run out 0.6 s before this read
        assert lease_until > now
    assert {job.status for job in session.scalars(select(Job).execution_options(populate_existing=True))} == {
        "succeeded"
    }


class CountingContext:
    """What the keeper needs of a job's context: renew() and lease_lost()."""

    def __init__(self) -> None:
        self.renewals = 0
        self.job_id = "job"

    def renew(self) -> None:
        self.renewals += 1

    def lease_lost(self) -> bool:
        return False


def test_the_keeper_wakes_from_idle_for_a_new_job() -> None:
    keeper = LeaseKeeper(interval=0.05)
    short = [CountingContext() for _ in range(20)]
    for ctx in short:  # jobs shorter than the interval, back to back: the thread is not woken for each
        with keeper.keeping(ctx):  # type: ignore[arg-type]
            time.sleep(0.005)
    late = CountingContext()
    time.sleep(0.2)  # the thread has found no job and waits without a deadline
    with keeper.keeping(late):  # type: ignore[arg-type]
        time.sleep(0.3)
    assert late.renewals >= 2  # every 0.05 s (about 6): a deadline it only learns of by being woken
