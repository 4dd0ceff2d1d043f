"""The retention pruner on each backend: exactly the expired rows go (per status, per job type, with their events and
results), the job a schedule last made stays, export files past their days go from the table and the disk, a run
stops at its budget and the next goes on; and while it deletes, 4 clients submit without waiting on it."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

from core.db import make_sessionmaker
from core.models import Job, JobEvent, JobResult, Schedule, StoredFile
from core.registry import JobSpec, Registry
from core.retention import Retention, prune
from core.settings import Settings
from core.submit import JobRequest, submit_job
from core.types import utcnow
from tests.core.factories import queued_job_row

DAY = timedelta(days=1)


def finished_rows(count: int, status: str, age: timedelta, job_type: str = "echo") -> list[dict[str, Any]]:
    now = utcnow()
    rows = []
    for _ in range(count):
        row = queued_job_row(now - age) | {"status": status, "type": job_type, "attempt": 1,
                                           "finished_at": now - age}  # fmt: skip
        rows.append(row)
    return rows


def insert_finished(engine: Engine, rows: list[dict[str, Any]]) -> list[uuid.UUID]:
    """The jobs, each with two events and (succeeded ones) a result."""
    with engine.begin() as connection:
        connection.execute(insert(Job), rows)
        events = [{"job_id": r["id"], "kind": kind, "attempt": 1, "created_at": r["created_at"]}
                  for r in rows for kind in ("queued", r["status"])]  # fmt: skip
        connection.execute(insert(JobEvent), events)
        results = [{"job_id": r["id"], "data": {"ok": True}, "created_at": r["created_at"]}
                   for r in rows if r["status"] == "succeeded"]  # fmt: skip
        if results:
            connection.execute(insert(JobResult), results)
    return [r["id"] for r in rows]


def retention(registry: Registry, **settings: Any) -> Retention:
    return Retention.of(Settings(**settings), registry)


def remaining(session: Session, ids: list[uuid.UUID]) -> int:
    return session.scalar(select(func.count()).select_from(Job).where(Job.id.in_(ids))) or 0


def test_exactly_the_expired_rows_go_with_their_events_and_results(
    clean_db: Engine, registry: Registry, tmp_path: Path
) -> None:
    expired = {
        "succeeded": insert_finished(clean_db, finished_rows(25, "succeeded", 8 * DAY)),
        "cancelled": insert_finished(clean_db, finished_rows(5, "cancelled", 8 * DAY)),
        "failed": insert_finished(clean_db, finished_rows(4, "failed", 31 * DAY)),
    }
    kept = (insert_finished(clean_db, finished_rows(6, "succeeded", 6 * DAY))
            + insert_finished(clean_db, finished_rows(3, "failed", 8 * DAY))
            + insert_finished(clean_db, finished_rows(2, "queued", 60 * DAY))
            + insert_finished(clean_db, finished_rows(2, "running", 60 * DAY)))  # fmt: skip
    scheduled = insert_finished(clean_db, finished_rows(1, "succeeded", 90 * DAY))
    sessions = make_sessionmaker(clean_db)
    with sessions() as session, session.begin():
        session.add(Schedule(tenant_id="default", name="nightly", type="echo", payload={}, interval_seconds=60,
                             last_job_id=scheduled[0], next_fire_at=utcnow()))  # fmt: skip
    report = prune(sessions, retention(registry), data_dir=tmp_path, batch=10, budget_seconds=60)
    assert report.jobs == {"succeeded": 25, "cancelled": 5, "failed": 4} and report.finished
    everything = [i for ids in expired.values() for i in ids]
    with sessions() as session:
        assert remaining(session, everything) == 0
        assert remaining(session, kept) == len(kept) and remaining(session, scheduled) == 1
        assert session.scalar(select(func.count()).select_from(JobEvent).where(JobEvent.job_id.in_(everything))) == 0
        assert session.scalar(select(func.count()).select_from(JobResult).where(JobResult.job_id.in_(everything))) == 0
        assert session.scalar(select(func.count()).select_from(JobEvent)) == 2 * (len(kept) + 1)
    again = prune(sessions, retention(registry), data_dir=tmp_path, batch=10, budget_seconds=60)
    assert sum(again.jobs.values()) == 0


def test_a_job_types_own_retention_and_zero_for_forever(clean_db: Engine, registry: Registry, tmp_path: Path) -> None:
    spec = registry.get("fail")
    chatty = Registry([*[s for s in registry if s.name != "fail"],
                       JobSpec(**{**spec.__dict__, "retention_days": {"succeeded": 1, "failed": 0}})])  # fmt: skip
    short = insert_finished(clean_db, finished_rows(3, "succeeded", 2 * DAY, "fail"))
    echo = insert_finished(clean_db, finished_rows(3, "succeeded", 2 * DAY))
    forever = insert_finished(clean_db, finished_rows(3, "failed", 400 * DAY, "fail"))
    old_echo_failures = insert_finished(clean_db, finished_rows(2, "failed", 400 * DAY))
    sessions = make_sessionmaker(clean_db)
    report = prune(sessions, retention(chatty, retention_cancelled_days=0), data_dir=tmp_path, batch=100,
                   budget_seconds=60)  # fmt: skip
    assert report.jobs == {"succeeded": 3, "cancelled": 0, "failed": 2}
    with sessions() as session:
        assert remaining(session, short) == 0 and remaining(session, old_echo_failures) == 0
        assert remaining(session, echo) == 3 and remaining(session, forever) == 3
    with pytest.raises(ValueError, match="retention_days"):
        JobSpec(**{**spec.__dict__, "retention_days": {"running": 1}})


def test_a_run_stops_at_its_budget_and_the_next_goes_on(clean_db: Engine, registry: Registry, tmp_path: Path) -> None:
    ids = insert_finished(clean_db, finished_rows(30, "succeeded", 8 * DAY))
    sessions = make_sessionmaker(clean_db)
    first = prune(sessions, retention(registry), data_dir=tmp_path, batch=10, budget_seconds=0)
    assert not first.finished and first.jobs["succeeded"] == 0  # no time at all: nothing, and it says so
    while True:
        report = prune(sessions, retention(registry), data_dir=tmp_path, batch=10, budget_seconds=60)
        if report.finished:
            break
    with sessions() as session:
        assert remaining(session, ids) == 0


def test_expired_export_files_go_from_the_table_and_the_disk(
    clean_db: Engine, registry: Registry, tmp_path: Path
) -> None:
    now = utcnow()
    sessions = make_sessionmaker(clean_db)
    files = {}
    for name, kind, age in (("old.csv", "export", 8 * DAY), ("new.csv", "export", DAY), ("up.csv", "upload", 80 * DAY)):
        (tmp_path / name).write_text("a\n1\n")
        stored = StoredFile(id=uuid.uuid4(), tenant_id="default", kind=kind, path=name, filename=name,
                            content_type="text/csv", size=4, sha256="0" * 64, created_at=now - age)  # fmt: skip
        with sessions() as session, session.begin():
            session.add(stored)
        files[name] = stored.id
    report = prune(sessions, retention(registry), data_dir=tmp_path, batch=10, budget_seconds=60)
    assert report.files == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.csv", "up.csv"]
    with sessions() as session:
        assert sorted(session.scalars(select(StoredFile.filename))) == ["new.csv", "up.csv"]


def test_submits_never_wait_on_the_pruner(clean_db: Engine, registry: Registry, tmp_path: Path) -> None:
    """4 clients submit while the pruner deletes 6,000 expired jobs in batches: every submit goes through, none
    waits a second (a lock held for a whole run would show here), and exactly the expired rows are gone."""
    expired = insert_finished(clean_db, finished_rows(6000, "succeeded", 8 * DAY))
    sessions = make_sessionmaker(clean_db)
    made: list[uuid.UUID] = []
    slowest: list[float] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def client() -> None:
        try:
            while not stop.is_set():
                started = time.monotonic()
                with sessions() as session, session.begin():
                    job, _ = submit_job(session, registry=registry, known_queues=["default"],
                                        request=JobRequest(type="echo", payload={"message": "m"}))  # fmt: skip
                slowest.append(time.monotonic() - started)
                made.append(job.id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        report = prune(sessions, retention(registry), data_dir=tmp_path, batch=500, budget_seconds=120)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == [] and report.finished and report.jobs["succeeded"] == 6000
    assert made and max(slowest) < 1.0, max(slowest)
    with sessions() as session:
        assert remaining(session, expired) == 0 and remaining(session, made) == len(made)


def test_an_unfinished_workflows_jobs_stay_and_a_finished_one_goes_after_its_retention(
    clean_db: Engine, registry: Registry, tmp_path: Path
) -> None:
    from core.workflows.models import Workflow, WorkflowStep

    now = utcnow()
    sessions = make_sessionmaker(clean_db)
    flows = {}
    for name, status, finished in (
        ("running", "running", None),
        ("old", "succeeded", now - 8 * DAY),
        ("recent", "succeeded", now - 6 * DAY),
        ("old_failed", "failed", now - 8 * DAY),
    ):
        flow = Workflow(tenant_id="default", name=name, status=status, failure_policy="fail_fast", steps_total=1,
                        retries=0, sweep_pending=False, created_at=now - 9 * DAY, updated_at=now,
                        finished_at=finished)  # fmt: skip
        with sessions() as session, session.begin():
            session.add(flow)
            session.flush()
            session.add(WorkflowStep(workflow_id=flow.id, name="a", position=0, type="echo", payload={},
                                     depends_on=[], release_when="all_succeeded", parents_pending=0,
                                     status="succeeded"))  # fmt: skip
        rows = finished_rows(3, "succeeded", 8 * DAY)
        for row in rows:
            row |= {"workflow_id": flow.id, "workflow_step": "a"}
        flows[name] = (flow.id, insert_finished(clean_db, rows))
    report = prune(sessions, retention(registry), data_dir=tmp_path, batch=10, budget_seconds=60)
    assert report.jobs["succeeded"] == 9 and report.workflows == 1
    with sessions() as session:
        assert remaining(session, flows["running"][1]) == 3  # its next steps may still read them
        assert [remaining(session, flows[name][1]) for name in ("old", "recent", "old_failed")] == [0, 0, 0]
        left = set(session.scalars(select(Workflow.name)))
        assert left == {"running", "recent", "old_failed"}  # failed ones are kept 30 days
        assert session.scalar(select(func.count()).select_from(WorkflowStep)) == 3  # the old one's went with it
