"""A workflow's fan-in is released exactly once by the real executor, when two workers finish its last two parents
at the same instant: each delivery runs in a thread of its own, held at a barrier just before its completion, on
each backend, 200 times."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from core.jobs import claim_job
from core.models import Job
from core.registry import Registry
from core.types import utcnow
from core.workflows.definition import WorkflowDefinition
from core.workflows.models import Workflow, WorkflowEvent, WorkflowStep
from core.workflows.submit import WorkflowRequest, submit_workflow
from worker import executor
from worker.executor import Delivery, execute_message
from worker.runtime import WorkerRuntime

ROUNDS = 200


RACES = {
    # two steps: each parent is its step's last job
    "two parents": [
        {"name": "left", "type": "collect", "payload": {"value": "l"}},
        {"name": "right", "type": "collect", "payload": {"value": "r"}},
        {"name": "join", "type": "collect", "depends_on": ["left", "right"],
         "payload": {"items": [{"$ref": "steps.left.result.value"}, {"$ref": "steps.right.result.value"}]}},
    ],
    # one mapped step: both items take the one-statement count, and exactly one must find it was the last
    "two items of a map": [
        {"name": "fan", "type": "collect", "map": ["l", "r"], "payload": {"value": {"$ref": "item"}}},
        {"name": "join", "type": "collect", "depends_on": ["fan"],
         "payload": {"items": [{"$ref": "steps.fan.result[0].value"}, {"$ref": "steps.fan.result[1].value"}]}},
    ],
}  # fmt: skip


def diamond_bottom(runtime: WorkerRuntime, steps: list[dict[str, Any]]) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """A workflow whose step `join` waits for two jobs; their jobs claimed, as two workers' would be."""
    definition = WorkflowDefinition.model_validate({"name": "race", "steps": steps})
    with runtime.sessions() as session, session.begin():
        workflow, _ = submit_workflow(session, WorkflowRequest(definition, tenant_id="default"), now=utcnow())
        parents = list(session.scalars(select(Job.id).where(Job.workflow_id == workflow.id)))
    return workflow.id, parents


@pytest.mark.parametrize("race", list(RACES))
def test_two_parents_finishing_together_release_their_dependant_once(
    runtime: WorkerRuntime, monkeypatch: pytest.MonkeyPatch, race: str
) -> None:
    registry: Registry = runtime.registry
    spec = registry.get("collect")
    barrier = threading.Barrier(2, timeout=30)
    real_complete, real_counted = executor.complete_job, executor.complete_counted

    def complete_together(*args: Any, **kwargs: Any) -> bool:
        barrier.wait()  # both attempts have run their handlers; now both finish at once
        return real_complete(*args, **kwargs)

    def counted_together(*args: Any, **kwargs: Any) -> Any:
        barrier.wait()
        counted = real_counted(*args, **kwargs)
        if counted is None:  # the last item: it goes on to complete_job, which must not wait for the other again
            waived.add(threading.get_ident())
        return counted

    waived: set[int] = set()

    def complete_after_count(*args: Any, **kwargs: Any) -> bool:
        if threading.get_ident() in waived:
            waived.discard(threading.get_ident())
            return real_complete(*args, **kwargs)
        return complete_together(*args, **kwargs)

    monkeypatch.setattr(executor, "complete_job", complete_after_count)
    monkeypatch.setattr(executor, "complete_counted", counted_together)
    errors: list[BaseException] = []

    def deliver(job_id: uuid.UUID) -> None:
        try:
            outcome = execute_message(runtime, spec, [str(job_id)], Delivery("race"))
            assert dict(outcome.counts) == {"succeeded": 1}, outcome
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    joins: list[uuid.UUID] = []
    for _ in range(ROUNDS):
        workflow_id, parents = diamond_bottom(runtime, RACES[race])
        threads = [threading.Thread(target=deliver, args=(job_id,)) for job_id in parents]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        with runtime.sessions() as session:
            join_jobs = session.scalars(select(Job).where(Job.workflow_id == workflow_id, Job.workflow_step == "join"))
            [join_job] = list(join_jobs)
            releases = session.scalar(select(func.count()).where(WorkflowEvent.workflow_id == workflow_id,
                                                                 WorkflowEvent.kind == "step_released",
                                                                 WorkflowEvent.step == "join"))  # fmt: skip
            join = session.get_one(WorkflowStep, (workflow_id, "join"))
            assert (releases, join.status, join.parents_pending) == (1, "running", 0)
            assert join_job.payload == {"items": ["l", "r"], "value": None, "fail": False}
            assert session.get_one(Workflow, workflow_id).status == "running"
            joins.append(join_job.id)
    published = [w.job_id for w in runtime.publisher.sent]  # type: ignore[attr-defined]
    assert [published.count(job_id) for job_id in joins] == [1] * ROUNDS  # one message per release


def test_a_lost_attempt_releases_nothing(runtime: WorkerRuntime) -> None:
    """An attempt whose lease was taken over finishes without a completion: its dependant stays waiting."""
    with runtime.sessions() as session, session.begin():
        definition = WorkflowDefinition.model_validate({"name": "lost", "steps": [
            {"name": "a", "type": "collect"}, {"name": "b", "type": "collect", "depends_on": ["a"]}]})  # fmt: skip
        workflow, _ = submit_workflow(session, WorkflowRequest(definition, tenant_id="default"), now=utcnow())
        [job_id] = session.scalars(select(Job.id).where(Job.workflow_id == workflow.id))
    with runtime.sessions() as session, session.begin():
        assert claim_job(session, job_id=job_id, worker="old", lease_seconds=30) is not None
    with runtime.sessions() as session, session.begin():
        # the reconciler gave the job to another attempt (attempt 2 now owns it)
        job = session.get_one(Job, job_id)
        job.status, job.attempt = "running", 2
    with runtime.job_unit() as unit:
        stale = executor.ClaimedJob(id=job_id, type="collect", queue="default", payload={}, attempt=1,
                                    max_attempts=1, tenant_id="default", workflow_id=workflow.id,
                                    workflow_step="a")  # fmt: skip
        done = {"items": [], "count": 0, "value": None}
        assert executor._complete(runtime, unit, stale, "old", done, None) == (False, None)
    with runtime.sessions() as session:
        assert session.get_one(WorkflowStep, (workflow.id, "b")).status == "waiting"
        assert session.scalar(select(func.count()).where(Job.workflow_id == workflow.id)) == 1
