"""Ledger operations on a real database (SQLite and PostgreSQL): submit, claim, finish, fail, reconcile."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.db import make_sessionmaker
from core.errors import IdempotencyMismatch, PayloadInvalid, UnknownQueue, UnknownType
from core.jobs import (
    backoff_delay,
    claim_job,
    complete_and_claim,
    complete_job,
    fail_attempt,
    mark_unpublished,
    renew_lease,
)
from core.models import Job, JobEvent, JobResult
from core.reconcile import reconcile
from core.registry import Registry
from core.status import JobStatus
from core.submit import JobRequest, submit_job, submit_jobs
from core.types import utcnow
from tests.core.factories import insert_job

QUEUES = ["default"]


def submit(session: Session, registry: Registry, now: datetime | None = None, **kwargs: Any) -> Job:
    request = JobRequest(**({"type": "echo", "payload": {"message": "hi"}} | kwargs))
    job, _ = submit_job(session, registry=registry, known_queues=QUEUES, request=request, now=now)
    session.commit()
    return job


def events(session: Session, job: Job) -> list[str]:
    return list(session.scalars(select(JobEvent.kind).where(JobEvent.job_id == job.id).order_by(JobEvent.id)))


def test_submit_due_job_is_queued_and_published(session: Session, registry: Registry) -> None:
    job = submit(session, registry)
    assert job.status == "queued" and job.published_at is not None and job.attempt == 0
    assert events(session, job) == ["queued"]


def test_submit_future_job_is_scheduled(session: Session, registry: Registry) -> None:
    job = submit(session, registry, run_at=utcnow() + timedelta(hours=1))
    assert job.status == "scheduled" and job.published_at is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"type": "nope"}, UnknownType),
        ({"payload": {"message": 1}}, PayloadInvalid),
        ({"payload": {"message": "x", "extra": 1}}, PayloadInvalid),
        ({"queue": "elsewhere"}, UnknownQueue),
    ],
)
def test_submit_rejects_and_writes_nothing(
    session: Session, registry: Registry, kwargs: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        submit(session, registry, **kwargs)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Job)) == 0


def test_payload_errors_name_the_field(session: Session, registry: Registry) -> None:
    with pytest.raises(PayloadInvalid) as info:
        submit(session, registry, payload={})
    assert info.value.errors == [{"field": "payload.message", "message": "Field required"}]


def test_idempotency_key_same_request_returns_same_job(session: Session, registry: Registry) -> None:
    first = submit(session, registry, idempotency_key="k1", request_hash="h")
    again, created = submit_job(session, registry=registry, known_queues=QUEUES, request=JobRequest(
        type="echo", payload={"message": "hi"}, idempotency_key="k1", request_hash="h"))  # fmt: skip
    assert not created and again.id == first.id
    with pytest.raises(IdempotencyMismatch):
        submit(session, registry, idempotency_key="k1", request_hash="other")
    assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_claim_is_exclusive(session: Session, registry: Registry) -> None:
    job = submit(session, registry)
    first = claim_job(session, job_id=job.id, worker="a", lease_seconds=30)
    session.commit()
    second = claim_job(session, job_id=job.id, worker="b", lease_seconds=30)
    session.commit()
    assert first is not None and first.attempt == 1
    assert second is None


def test_complete_once_then_never_again(session: Session, registry: Registry) -> None:
    job = submit(session, registry)
    claimed = claim_job(session, job_id=job.id, worker="a", lease_seconds=30)
    assert claimed is not None
    assert complete_job(session, job_id=job.id, attempt=1, worker="a", data={"message": "hi"})
    session.commit()
    assert not complete_job(session, job_id=job.id, attempt=1, worker="a", data={"message": "again"})
    session.commit()
    assert session.scalar(select(func.count()).select_from(JobResult).where(JobResult.job_id == job.id)) == 1
    assert events(session, job) == ["queued", "running", "succeeded"]


def test_complete_and_claim_finishes_one_job_and_starts_the_next(session: Session, registry: Registry) -> None:
    first, second = submit(session, registry), submit(session, registry)
    assert claim_job(session, job_id=first.id, worker="a", lease_seconds=30) is not None
    completed, claimed = complete_and_claim(session, job_id=first.id, attempt=1, worker="a", data={"message": "hi"},
                                            next_job_id=second.id, lease_seconds=30)  # fmt: skip
    session.commit()
    assert completed and claimed is not None
    assert (claimed.id, claimed.attempt, claimed.payload) == (second.id, 1, {"message": "hi"})
    rows = {job.id: job for job in session.scalars(select(Job).execution_options(populate_existing=True))}
    assert rows[first.id].status == "succeeded" and rows[first.id].finished_at is not None
    assert rows[second.id].status == "running" and rows[second.id].worker == "a" and rows[second.id].lease_until
    assert session.scalar(select(JobResult.data).where(JobResult.job_id == first.id)) == {"message": "hi"}
    assert events(session, first) == ["queued", "running", "succeeded"]
    assert events(session, second) == ["queued", "running"]


@pytest.mark.parametrize("lost", [False, True], ids=["completed", "lease-lost"])
def test_complete_and_claim_reports_each_half_on_its_own(session: Session, registry: Registry, lost: bool) -> None:
    """A next job that is not claimable (here: cancelled) is not claimed; an attempt that lost its job writes no
    result; and each half says so without hiding the other."""
    first, second = submit(session, registry), submit(session, registry)
    assert claim_job(session, job_id=first.id, worker="a", lease_seconds=30) is not None
    session.execute(update(Job).where(Job.id == second.id).values(status="cancelled"))
    attempt = 2 if lost else 1  # attempt 2 does not own the job: another attempt took it over
    completed, claimed = complete_and_claim(session, job_id=first.id, attempt=attempt, worker="a", data={},
                                            next_job_id=second.id, lease_seconds=30)  # fmt: skip
    session.commit()
    assert (completed, claimed) == (not lost, None)
    assert session.scalar(select(Job.status).where(Job.id == first.id)) == ("running" if lost else "succeeded")
    assert events(session, second) == ["queued"]
    results = session.scalar(select(func.count()).select_from(JobResult).where(JobResult.job_id == first.id))
    assert results == (0 if lost else 1)


def test_complete_and_claim_claims_after_a_lost_lease(session: Session, registry: Registry) -> None:
    first, second = submit(session, registry), submit(session, registry)
    assert claim_job(session, job_id=first.id, worker="a", lease_seconds=30) is not None
    completed, claimed = complete_and_claim(session, job_id=first.id, attempt=2, worker="a", data={},
                                            next_job_id=second.id, lease_seconds=30)  # fmt: skip
    session.commit()
    assert not completed and claimed is not None and claimed.id == second.id
    assert events(session, first) == ["queued", "running"] and events(session, second) == ["queued", "running"]


def test_failure_retries_with_backoff_then_fails(session: Session, registry: Registry) -> None:
    job = submit(session, registry, max_attempts=2)
    now = utcnow()
    error = {"type": "Boom", "message": "no"}
    for attempt, expected in ((1, JobStatus.RETRYING), (2, JobStatus.FAILED)):
        session.execute(Job.__table__.update().where(Job.id == job.id).values(status="queued"))
        assert claim_job(session, job_id=job.id, worker="w", lease_seconds=30) is not None
        status = fail_attempt(
            session, job_id=job.id, attempt=attempt, worker="w", error=error, retryable=True,
            backoff=10, backoff_cap=100, now=now,
        )  # fmt: skip
        session.commit()
        assert status is expected
    session.refresh(job)
    assert job.error == error and job.finished_at is not None


def test_backoff_grows_and_is_capped() -> None:
    for attempt in range(1, 12):
        delay = backoff_delay(attempt, 2.0, 60.0)
        assert min(60.0, 2.0 * 2 ** (attempt - 1)) * 0.5 <= delay <= min(60.0, 2.0 * 2 ** (attempt - 1))


def test_lost_lease_cannot_renew_or_complete(session: Session, registry: Registry) -> None:
    job = insert_job(session, JobStatus.RUNNING, attempt=2)
    assert renew_lease(session, job_id=job.id, attempt=1, lease_seconds=30) is None
    assert not complete_job(session, job_id=job.id, attempt=1, worker="old", data={})
    assert renew_lease(session, job_id=job.id, attempt=2, lease_seconds=30) is False


def test_reconciler_recovers_expired_lease_then_caps_attempts(session: Session) -> None:
    now = utcnow()
    retried = insert_job(session, JobStatus.RUNNING, attempt=1, max_attempts=3, lease_until=now - timedelta(seconds=1))
    capped = insert_job(session, JobStatus.RUNNING, attempt=3, max_attempts=3, lease_until=now - timedelta(seconds=1))
    alive = insert_job(session, JobStatus.RUNNING, attempt=1, lease_until=now + timedelta(seconds=30))
    report = reconcile(session, republish_after=60, backoff_cap=60, now=now)
    session.commit()
    assert report.leases_expired == 2
    statuses = dict(session.execute(select(Job.id, Job.status)).all())
    assert statuses[retried.id] == "queued"  # lease_expired → retrying (no delay) → queued and published
    assert statuses[capped.id] == "failed"
    assert statuses[alive.id] == "running"
    assert report.job_ids == [retried.id]
    failed = session.get(Job, capped.id)
    assert failed is not None and failed.error is not None and failed.error["type"] == "WorkerLost"
    assert events(session, capped) == ["lease_expired", "failed"]


def test_reconciler_wakes_due_jobs_only(session: Session, registry: Registry) -> None:
    now = utcnow()
    due = submit(session, registry, run_at=now + timedelta(seconds=5))
    later = submit(session, registry, run_at=now + timedelta(hours=1))
    report = reconcile(session, republish_after=60, backoff_cap=60, now=now + timedelta(seconds=6))
    session.commit()
    assert report.job_ids == [due.id]
    session.refresh(later)
    assert later.status == "scheduled"


def test_reconciler_republishes_unpublished_and_stale_queued(session: Session, registry: Registry) -> None:
    now = utcnow()
    unpublished = submit(session, registry, now=now - timedelta(seconds=10))
    mark_unpublished(session, [unpublished.id])
    stale = submit(session, registry, now=now - timedelta(seconds=120))
    fresh = submit(session, registry, now=now)
    session.commit()
    later = utcnow() + timedelta(seconds=5)  # past the grace the API has between its commit and its publish
    report = reconcile(session, republish_after=60, backoff_cap=60, now=later)
    session.commit()
    assert set(report.job_ids) == {unpublished.id, stale.id}
    assert fresh.id not in set(report.job_ids)
    # published again now: the next tick leaves them alone
    assert reconcile(session, republish_after=60, backoff_cap=60, now=later).to_publish == []


def test_reconciler_publishes_what_a_broker_outage_held_back_in_shared_messages(
    session: Session, registry: Registry
) -> None:
    """Every job submitted during an outage is unpublished: they go out oldest first sharing messages, as a batch
    submit's do, each row recording its message's size (and the job of a type no longer registered, alone, and a retry
    woken in the same tick, alone)."""
    now = utcnow()
    held = [submit(session, registry, now=now - timedelta(seconds=30 - i)) for i in range(5)]
    held.append(insert_job(session, JobStatus.QUEUED, type="removed", now=now - timedelta(seconds=20)))
    retry = insert_job(session, JobStatus.RETRYING, attempt=1, now=now - timedelta(seconds=10))  # due: woken now
    mark_unpublished(session, [job.id for job in held])
    session.commit()
    later = utcnow() + timedelta(seconds=5)
    report = reconcile(session, republish_after=60, backoff_cap=60, registry=registry, jobs_per_message=2, now=later)
    session.commit()
    assert [[w.job_id for w in m.wakeups] for m in report.to_publish] == [
        [held[0].id, held[1].id], [held[2].id, held[3].id], [held[4].id], [held[5].id], [retry.id]]  # fmt: skip
    assert report.to_publish[-1].retries == 1  # a retry's message is its own: Flower shows it as the task's retries
    rows = {job.id: (job.message_jobs, job.published_at) for job in session.scalars(select(Job))}
    assert [rows[job.id] for job in held] == [(2, later)] * 4 + [(1, later)] * 2
    assert report.republished == 6 and report.woken == 1


def race_submits(session: Session, registry: Registry, count: int, **keys: str) -> set[str]:
    """`count` submits from 10 threads, each in its own session and transaction; the ids they got back."""
    sessions = make_sessionmaker(session.get_bind())  # type: ignore[arg-type]

    def attempt(i: int) -> str:
        with sessions() as own:
            request = JobRequest(
                type="echo", payload={"message": "same" if "idempotency_key" in keys else str(i)}, **keys
            )  # type: ignore[arg-type]
            job, _created = submit_job(own, registry=registry, known_queues=QUEUES, request=request)
            own.commit()
            return str(job.id)

    with ThreadPoolExecutor(10) as pool:
        return set(pool.map(attempt, range(count)))


def test_concurrent_submits_with_one_idempotency_key_make_one_job(
    session: Session, registry: Registry, clean_db: object
) -> None:
    assert len(race_submits(session, registry, 20, idempotency_key="race", request_hash="same")) == 1
    assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_lease_renewal_alone_keeps_updated_at(session: Session) -> None:
    job = insert_job(session, JobStatus.RUNNING, attempt=1, now=utcnow() - timedelta(minutes=1))
    before = job.updated_at
    assert renew_lease(session, job_id=job.id, attempt=1, lease_seconds=30) is False
    session.commit()
    session.refresh(job)
    assert job.updated_at == before and job.lease_until is not None and job.lease_until > utcnow()
    renew_lease(session, job_id=job.id, attempt=1, lease_seconds=30, progress=(1, 2, "half"))
    session.commit()
    session.refresh(job)
    assert job.updated_at > before and job.progress_done == 1


def test_unique_key_returns_the_active_job_until_it_finishes(session: Session, registry: Registry) -> None:
    first = submit(session, registry, unique_key="report-2026-11-26")
    again, created = submit_job(session, registry=registry, known_queues=QUEUES, request=JobRequest(
        type="echo", payload={"message": "other"}, unique_key="report-2026-11-26"))  # fmt: skip
    assert not created and again.id == first.id
    claim_job(session, job_id=first.id, worker="w", lease_seconds=30)
    complete_job(session, job_id=first.id, attempt=1, worker="w", data={"message": "hi"})
    session.commit()
    after = submit(session, registry, unique_key="report-2026-11-26")
    assert after.id != first.id and after.status == "queued"


def test_concurrent_submits_with_one_unique_key_make_one_active_job(
    session: Session, registry: Registry, clean_db: object
) -> None:
    assert len(race_submits(session, registry, 30, unique_key="nightly")) == 1
    assert session.scalar(select(func.count()).select_from(Job)) == 1


def test_reconciler_republishes_only_the_messages_the_broker_lacks(session: Session, registry: Registry) -> None:
    """Behind a backlog every row waits past republish_after; only rows whose message is gone get another one."""
    now = utcnow()
    waiting = [submit(session, registry, now=now - timedelta(seconds=300 - i)) for i in range(5)]  # oldest first
    unpublished = submit(session, registry, now=now - timedelta(seconds=10))
    mark_unpublished(session, [unpublished.id])
    later = utcnow() + timedelta(seconds=5)  # past the grace the API has between its commit and its publish
    # committed a moment before the tick, their publish not done yet: no message to weigh them against
    just_committed = [submit(session, registry, now=later - timedelta(seconds=1)) for _ in range(3)]
    session.commit()

    def tick(depth: int, at: datetime) -> list[object]:
        report = reconcile(session, republish_after=60, backoff_cap=60, broker_depth=lambda _queue: depth, now=at)
        session.commit()
        return report.job_ids

    # the five waiting rows' messages are in the broker: only the row whose publish failed goes out
    assert tick(5, later) == [unpublished.id]
    # a tick later all nine have their messages; two lost (a broker restart without persistence): FIFO says the
    # oldest two rows'
    assert tick(7, later + timedelta(seconds=5)) == [waiting[0].id, waiting[1].id]
    kinds = session.scalars(select(JobEvent.kind).where(JobEvent.kind == "republished")).all()
    assert len(kinds) == 3 and len(just_committed) == 3


def test_reconciler_weighs_the_broker_depth_by_jobs_per_message(session: Session, registry: Registry) -> None:
    """Two messages of 50 batch jobs each: one message lost means the 50 oldest rows, as single messages (a lost
    message is a guess: a shared one sent in error would duplicate a whole message's worth)."""
    now = utcnow()
    older = [submit(session, registry, now=now - timedelta(seconds=300)) for _ in range(50)]
    newer = [submit(session, registry, now=now - timedelta(seconds=200)) for _ in range(50)]
    session.execute(update(Job).values(message_jobs=50))
    session.commit()
    later = utcnow() + timedelta(seconds=5)

    def tick(depth: int) -> set[object]:
        report = reconcile(session, republish_after=60, backoff_cap=60, broker_depth=lambda _queue: depth,
                           registry=registry, jobs_per_message=50, now=later)  # fmt: skip
        session.commit()
        return set(report.job_ids)

    assert tick(2) == set()  # both messages there: 100 rows waiting are no loss
    assert tick(1) == {job.id for job in older}
    assert set(session.scalars(select(Job.message_jobs).where(Job.id.in_([j.id for j in older])))) == {1}
    # the queue empty (a broker restart without persistence): every stale row lacks its message
    assert tick(0) == {job.id for job in newer}


@pytest.mark.parametrize("count", [1, 2, 150])
def test_plain_submits_keep_every_value(session: Session, registry: Registry, count: int) -> None:
    """A group of plain submits is one statement on PostgreSQL, of column arrays or, for one job, a VALUES row
    (executemany on SQLite): every column and event arrives as given, unicode, nested JSON, future run_at and all."""
    later = utcnow().replace(microsecond=123456) + timedelta(hours=1)
    requests = [JobRequest(type="echo", payload={"message": f"zürich ✓ {i}"}, priority=i % 10,
                           run_at=later if i % 2 else None, max_attempts=1 + i % 5, actor=f"key{i}")
                    for i in range(count)]  # fmt: skip
    if count == 1:
        requests[0] = dataclasses.replace(requests[0], run_at=later)  # a lone job that is scheduled, too
    outcomes = submit_jobs(session, registry=registry, known_queues=QUEUES, requests=requests).outcomes
    session.commit()
    rows = {job.id: job for job in session.scalars(select(Job).execution_options(populate_existing=True))}
    assert len(rows) == count
    for i, outcome in enumerate(outcomes):
        assert outcome.job is not None and outcome.created
        row = rows[outcome.job.id]
        assert (row.payload, row.priority, row.max_attempts) == ({"message": f"zürich ✓ {i}"}, i % 10, 1 + i % 5)
        scheduled = i % 2 or count == 1
        assert (row.status, row.run_at) == (("scheduled", later) if scheduled else ("queued", None))
        assert row.created_at.tzinfo is not None and row.cancel_requested is False
        detail = session.scalars(select(JobEvent.detail).where(JobEvent.job_id == row.id)).one()
        assert detail == {"queue": "default", "run_at": later.isoformat() if scheduled else None, "actor": f"key{i}"}
