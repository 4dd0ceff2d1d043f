"""Queue operations on each backend: a pause stops claims of the tenant's (or every tenant's) jobs in the queue and
keeps the reconciler from waking or publishing them; resume publishes them in shared messages; drain cancels pending
jobs in chunks with a reason; a bulk retry takes exactly the failed jobs its filter matches, up to its limit."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from core import queue_ops
from core.db import make_sessionmaker
from core.jobs import ClaimedJob, claim_job
from core.models import ALL_TENANTS, Job, JobEvent, QueuePause
from core.queue import RecordingPublisher
from core.queue_ops import FailedFilter, drain_queue, pause_queue, resume_queue, retry_failed
from core.reconcile import reconcile
from core.registry import Registry
from core.status import JobStatus
from core.submit import JobRequest, submit_job
from core.types import utcnow

S = JobStatus
QUEUES = ["default", "other"]


@pytest.fixture
def sessions(clean_db: Engine) -> Any:
    return make_sessionmaker(clean_db)


def submit(sessions: Any, registry: Registry, tenant: str = "acme", queue: str = "default", **fields: Any) -> Job:
    with sessions() as session, session.begin():
        request = JobRequest(type=fields.pop("type", "echo"), payload=fields.pop("payload", {"message": "m"}),
                             queue=queue, tenant_id=tenant, **fields)  # fmt: skip
        job, _ = submit_job(session, registry=registry, known_queues=QUEUES, request=request)
        return job


def claim(sessions: Any, job: Job) -> ClaimedJob | None:
    with sessions() as session, session.begin():
        return claim_job(session, job_id=job.id, worker="w:1", lease_seconds=30)


def row(sessions: Any, job: Job) -> Job:
    with sessions() as session:
        return session.get_one(Job, job.id)


def pause(sessions: Any, queue: str = "default", tenant: str = "acme", reason: str | None = "incident") -> None:
    with sessions() as session, session.begin():
        pause_queue(session, queue, tenant_id=tenant, actor="key1", reason=reason)


def test_a_pause_stops_claims_of_the_tenants_jobs_in_that_queue_only(sessions: Any, registry: Registry) -> None:
    paused = submit(sessions, registry, "acme")
    theirs = submit(sessions, registry, "globex")
    elsewhere = submit(sessions, registry, "acme", queue="other")
    pause(sessions)
    assert claim(sessions, paused) is None
    assert row(sessions, paused).status == "queued"
    assert claim(sessions, theirs) is not None and claim(sessions, elsewhere) is not None
    publisher = RecordingPublisher()
    before = utcnow()
    assert resume(sessions, registry, publisher, "acme") == 1
    assert publisher.sent_ids() == [paused.id]  # only the held job: the others' messages were never acked unclaimed
    assert row(sessions, paused).published_at >= before
    with sessions() as session:
        [event] = session.scalars(select(JobEvent).where(JobEvent.job_id == paused.id, JobEvent.kind == "republished"))
        assert event.detail == {"by": "resume"}
    claimed = claim(sessions, paused)
    assert claimed is not None and claimed.attempt == 1


def resume(sessions: Any, registry: Registry, publisher: RecordingPublisher, tenant: str, per_message: int = 50) -> int:
    return resume_queue(sessions, publisher, "default", tenant_id=tenant, registry=registry,
                        jobs_per_message=per_message)  # fmt: skip


def test_a_resume_publishes_the_held_jobs_oldest_first_in_shared_messages(
    sessions: Any, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of CHUNK, each committed then published; a publish that fails leaves its jobs to the reconciler."""
    monkeypatch.setattr(queue_ops, "CHUNK", 3)
    held = [submit(sessions, registry) for _ in range(7)]
    with sessions() as session, session.begin():  # single submits, published one by one, oldest first
        for age, job in enumerate(reversed(held)):
            session.execute(update(Job).where(Job.id == job.id).values(published_at=utcnow() - timedelta(seconds=age)))
    pause(sessions)
    publisher = RecordingPublisher()
    assert resume(sessions, registry, publisher, "acme", per_message=2) == 7
    assert [list(m.job_ids) for m in publisher.messages] == [
        [held[0].id, held[1].id], [held[2].id], [held[3].id, held[4].id], [held[5].id], [held[6].id]]  # fmt: skip
    assert [row(sessions, job).message_jobs for job in held] == [2, 2, 1, 2, 2, 1, 1]

    pause(sessions)
    publisher.fail = True
    assert resume(sessions, registry, publisher, "acme") == 7
    assert {row(sessions, job).published_at for job in held} == {None}  # the reconciler's now
    with sessions() as session, session.begin():
        report = reconcile(session, republish_after=60, backoff_cap=60, registry=registry, jobs_per_message=50,
                           now=utcnow() + timedelta(seconds=5))  # fmt: skip
    assert [sorted(m.job_ids) for m in report.to_publish] == [sorted(job.id for job in held)]


def test_pausing_twice_keeps_the_first_pause_and_resuming_an_unpaused_queue_does_nothing(
    sessions: Any, registry: Registry
) -> None:
    pause(sessions, reason="first")
    with sessions() as session:
        first = session.get_one(QueuePause, ("default", "acme")).paused_at
    pause(sessions, reason="second")
    with sessions() as session:
        [held] = session.scalars(select(QueuePause)).all()
        assert (held.paused_at, held.reason, held.paused_by) == (first, "second", "key1")
    assert resume(sessions, registry, RecordingPublisher(), "acme") == 0
    assert resume(sessions, registry, RecordingPublisher(), "acme") == 0
    with sessions() as session:
        assert session.scalars(select(QueuePause)).all() == []


def test_an_all_tenants_pause_holds_every_tenant_until_it_is_lifted(sessions: Any, registry: Registry) -> None:
    jobs = [submit(sessions, registry, tenant) for tenant in ("acme", "globex")]
    pause(sessions, tenant=ALL_TENANTS)
    pause(sessions, tenant="acme")
    publisher = RecordingPublisher()
    assert resume(sessions, registry, publisher, "acme") == 0  # a tenant lifts its own pause only
    assert [claim(sessions, job) for job in jobs] == [None, None]
    assert resume(sessions, registry, publisher, ALL_TENANTS) == 2
    assert sorted(publisher.sent_ids()) == sorted(job.id for job in jobs)
    assert all(claim(sessions, job) is not None for job in jobs)


def test_the_reconciler_neither_wakes_nor_publishes_a_paused_queues_jobs(sessions: Any, registry: Registry) -> None:
    now = utcnow()
    unpublished = submit(sessions, registry)
    lost = submit(sessions, registry)
    delayed = submit(sessions, registry, run_at=now + timedelta(seconds=1))
    other = submit(sessions, registry, "globex")
    with sessions() as session, session.begin():
        session.execute(
            update(Job).where(Job.id == unpublished.id).values(published_at=None, updated_at=now - timedelta(hours=1))
        )
        session.execute(update(Job).where(Job.id.in_([lost.id, other.id]))
                        .values(published_at=now - timedelta(hours=1)))  # fmt: skip
    pause(sessions)

    def tick() -> set[uuid.UUID]:
        with sessions() as session, session.begin():
            report = reconcile(session, republish_after=60, backoff_cap=60, now=now + timedelta(seconds=5))
        return set(report.job_ids)

    assert tick() == {other.id}  # the other tenant's lost message only
    assert row(sessions, delayed).status == "scheduled"
    publisher = RecordingPublisher()
    assert resume(sessions, registry, publisher, "acme") == 1
    assert publisher.sent_ids() == [lost.id]  # the resume publishes what was published; the rest is the tick's
    assert tick() == {unpublished.id, delayed.id}


def statuses(session: Session) -> dict[str, int]:
    return dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())


def test_a_drain_cancels_the_tenants_pending_jobs_in_chunks_with_the_reason(
    sessions: Any, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_ops, "CHUNK", 3)
    pending = [submit(sessions, registry) for _ in range(5)]
    pending.append(submit(sessions, registry, run_at=utcnow() + timedelta(hours=1)))  # scheduled
    running = submit(sessions, registry)
    assert claim(sessions, running) is not None
    kept = [submit(sessions, registry, "globex"), submit(sessions, registry, queue="other")]
    assert drain_queue(sessions, "default", tenant_id="acme", actor="key1", reason="bad deploy") == 6
    for job in pending:
        drained = row(sessions, job)
        assert drained.status == "cancelled" and drained.error == {"type": "Drained", "message": "bad deploy"}
    assert row(sessions, running).status == "running"
    assert [row(sessions, job).status for job in kept] == ["queued", "queued"]
    with sessions() as session:
        details = session.scalars(select(JobEvent.detail).where(JobEvent.kind == "cancelled")).all()
    assert len(details) == 6 and {(d["by"], d["reason"], d["actor"]) for d in details} == {
        ("drain", "bad deploy", "key1")
    }
    assert drain_queue(sessions, "default", tenant_id="acme", actor="key1", reason="again") == 0


def failed(sessions: Any, registry: Registry, *, tenant: str = "acme", error_type: str = "Timeout",
           finished_at: datetime | None = None, queue: str = "default", job_type: str = "echo") -> Job:  # fmt: skip
    job = submit(sessions, registry, tenant, queue=queue, type=job_type,
                 payload={"message": "m"} if job_type == "echo" else {"times": 1})  # fmt: skip
    with sessions() as session, session.begin():
        session.execute(update(Job).where(Job.id == job.id).values(
            status="failed", attempt=3, error={"type": error_type, "message": "x"},
            finished_at=finished_at or utcnow()))  # fmt: skip
    return job


def test_a_bulk_retry_takes_exactly_the_matching_failed_jobs_up_to_its_limit(
    sessions: Any, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_ops, "CHUNK", 2)
    now = utcnow()
    matching = [failed(sessions, registry, finished_at=now - timedelta(minutes=10 - i)) for i in range(5)]
    others = [
        failed(sessions, registry, tenant="globex"),
        failed(sessions, registry, error_type="ValueError"),
        failed(sessions, registry, finished_at=now - timedelta(days=2)),
        failed(sessions, registry, queue="other"),
        failed(sessions, registry, job_type="fail"),
    ]
    publisher = RecordingPublisher()
    wanted = FailedFilter("acme", type="echo", queue="default", error_type="Timeout",
                          failed_after=now - timedelta(hours=1), failed_before=now)  # fmt: skip
    first = retry_failed(sessions, publisher, wanted, limit=3, actor="key1")
    assert (first.retried, first.more) == (3, True)
    assert first.job_ids == [job.id for job in matching[:3]]  # oldest failure first
    second = retry_failed(sessions, publisher, wanted, limit=3, actor="key1")
    assert (second.retried, second.more) == (2, False)
    assert {w.job_id for w in publisher.sent} == {job.id for job in matching}
    for job in matching:
        again = row(sessions, job)
        assert (again.status, again.error, again.max_attempts, again.finished_at) == ("queued", None, 4, None)
    assert [row(sessions, job).status for job in others] == ["failed"] * 5
    with sessions() as session:
        details = session.scalars(select(JobEvent.detail).where(JobEvent.kind == "queued",
                                                                JobEvent.job_id == matching[0].id)).all()  # fmt: skip
    assert details[-1] == {"from": "failed", "by": "bulk retry", "actor": "key1"}
    # every tenant (an operator's CLI): the other tenant's one too
    everyone = retry_failed(sessions, publisher, FailedFilter(ALL_TENANTS, error_type="Timeout", type="echo",
                                                              queue="default"), limit=10, actor="cli")  # fmt: skip
    assert set(everyone.job_ids) == {others[0].id, others[2].id}


def test_a_failed_publish_leaves_retried_jobs_to_the_reconciler(sessions: Any, registry: Registry) -> None:
    job = failed(sessions, registry)
    publisher = RecordingPublisher()
    publisher.fail = True
    assert retry_failed(sessions, publisher, FailedFilter("acme"), limit=10, actor="key1").retried == 1
    again = row(sessions, job)
    assert again.status == "queued" and again.published_at is None
