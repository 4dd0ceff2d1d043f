"""ctx.enqueue on each backend, through the real executor: a handler's child jobs exist only if its attempt
succeeds, in the same transaction as the success, and are published once it has committed."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select

from core.models import Job
from core.queue import RecordingPublisher
from core.submit import JobRequest, submit_job
from core.types import utcnow
from worker.executor import Delivery, execute_message
from worker.runtime import WorkerRuntime


def spawn(runtime: WorkerRuntime, **payload: object) -> uuid.UUID:
    with runtime.sessions() as session, session.begin():
        job, _ = submit_job(session, registry=runtime.registry, known_queues=runtime.settings.queues,
                            request=JobRequest(type="spawn", payload=payload, request_id="req-1"))  # fmt: skip
        return job.id


def deliver(runtime: WorkerRuntime, job_id: uuid.UUID) -> Job:
    with runtime.sessions() as session:
        job_type = session.get_one(Job, job_id).type
    execute_message(runtime, runtime.registry.get(job_type), [str(job_id)], Delivery("test"))
    with runtime.sessions() as session:
        return session.get_one(Job, job_id)


def children(runtime: WorkerRuntime, parent: uuid.UUID) -> list[Job]:
    with runtime.sessions() as session:
        return list(session.scalars(select(Job).where(Job.parent_id == parent).order_by(Job.created_at)))


def test_a_successful_attempt_makes_its_children_and_publishes_them(runtime: WorkerRuntime) -> None:
    parent = spawn(runtime, children=3)
    publisher: RecordingPublisher = runtime.publisher  # type: ignore[assignment]
    publisher.sent.clear()
    job = deliver(runtime, parent)
    assert job.status == "succeeded"
    made = children(runtime, parent)
    assert len(made) == 3 and {c.status for c in made} == {"queued"}
    assert {c.tenant_id for c in made} == {"default"} and {c.request_id for c in made} == {"req-1"}
    with runtime.sessions() as session:
        result = session.execute(select(func.count()).where(Job.parent_id == parent)).scalar()
    assert result == 3
    assert sorted(str(w.job_id) for w in publisher.sent) == sorted(str(c.id) for c in made)
    for child in made:
        assert deliver(runtime, child.id).status == "succeeded"


def test_a_failed_attempt_leaves_no_child_and_its_retry_makes_them_once(runtime: WorkerRuntime) -> None:
    parent = spawn(runtime, children=2, fail_times=1)
    publisher: RecordingPublisher = runtime.publisher  # type: ignore[assignment]
    publisher.sent.clear()
    assert deliver(runtime, parent).status == "retrying"
    assert children(runtime, parent) == [] and publisher.sent == []
    with runtime.sessions() as session, session.begin():
        job = session.get_one(Job, parent)
        job.status, job.next_attempt_at = "queued", utcnow() - timedelta(seconds=1)  # as the reconciler would
    assert deliver(runtime, parent).status == "succeeded"
    assert len(children(runtime, parent)) == 2


def test_a_child_the_api_would_refuse_fails_the_attempt(runtime: WorkerRuntime) -> None:
    parent = spawn(runtime, children=1, child_payload={"nope": 1})
    job = deliver(runtime, parent)
    assert job.status == "retrying" and job.error is not None
    assert job.error["type"] == "PayloadInvalid" and "echo" in job.error["message"]
    assert children(runtime, parent) == []
