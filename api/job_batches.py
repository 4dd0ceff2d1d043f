"""/v1/jobs:batch: up to 1,000 jobs in one request and one transaction, with a result per item."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from sqlalchemy import select

from api.auth import principal, requires, tenant
from api.extension import conveyor, db
from api.jobs import job_request, submit_and_publish
from api.problems import conveyor_problem_body
from api.request_log import request_id
from api.schemas import BatchItemResult, BatchResult, JobBatchCreate, JobRead
from core.errors import ConveyorError
from core.keys import Scope
from core.models import Job
from core.submit import JobRequest, Submitted, check_request
from core.types import utcnow
from core.workflows.definition import StepDefinition, WorkflowDefinition
from core.workflows.submit import WorkflowRequest, submit_workflow

bp = APIBlueprint("job_batches", __name__, url_prefix="/v1", tag="Batches")


@bp.post("/jobs:batch")
@requires(Scope.JOBS_WRITE)
@bp.input(JobBatchCreate, location="json", arg_name="body")
@bp.output(BatchResult)
@bp.doc(
    summary="Submit up to 1,000 jobs at once",
    description="One transaction, then the accepted jobs are published: jobs of the same type, queue and priority "
    "share broker messages of up to CONVEYOR_JOBS_PER_MESSAGE jobs, each run by one worker process in turn. Items "
    "are independent: an invalid job type, payload or queue refuses that item only (its `error` says why); a "
    "malformed request (not a list, over 1,000 items, a field of the wrong type) refuses the whole request with "
    "422. Each item may carry its own `idempotency_key`.",
    responses={415: "Not JSON", 413: "Body over CONVEYOR_MAX_REQUEST_BYTES"},
)
def create_batch(body: JobBatchCreate) -> Any:
    now = utcnow()
    requests = [job_request(item, now=now, idempotency_key=item.idempotency_key) for item in body.jobs]
    if body.on_complete is not None:
        return _with_on_complete(body, requests)
    outcomes = submit_and_publish(db(), requests, now=now)
    return _result(outcomes)


def _result(outcomes: list[Submitted], workflow_id: uuid.UUID | None = None) -> BatchResult:
    items = []
    for index, outcome in enumerate(outcomes):
        if outcome.error is not None:
            items.append(BatchItemResult(index=index, status=outcome.error.status, job=None,
                                         error=conveyor_problem_body(outcome.error)))  # fmt: skip
        else:
            assert outcome.job is not None  # noqa: S101
            status = 202 if outcome.created else 200
            items.append(BatchItemResult(index=index, status=status, job=JobRead.of(outcome.job), error=None))
    return BatchResult(
        items=items,
        accepted=sum(1 for i in items if i.status == 202),
        existing=sum(1 for i in items if i.status == 200),
        rejected=sum(1 for i in items if i.status >= 400),
        workflow_id=workflow_id,
    )


def _with_on_complete(body: JobBatchCreate, requests: list[JobRequest]) -> BatchResult:
    """The accepted items as the independent steps of a workflow (failure policy `continue`) whose on_complete step
    runs once they have all finished; a refused item is answered as in any batch and is not part of it."""
    ext, session, now = conveyor(), db(), utcnow()
    refused: dict[int, ConveyorError] = {}
    for index, request_ in enumerate(requests):
        try:
            check_request(session, ext.registry, ext.settings.queues, request_)
        except ConveyorError as exc:
            refused[index] = exc
    steps = [StepDefinition(name=f"job-{index}", type=r.type, payload=r.payload, queue=r.queue, priority=r.priority,
                            max_attempts=r.max_attempts)
             for index, r in enumerate(requests) if index not in refused]  # fmt: skip
    if not steps:
        return _result([Submitted(None, created=False, error=refused[i]) for i in range(len(requests))])
    definition = WorkflowDefinition(name=f"batch of {len(steps)}", steps=steps, failure_policy="continue",
                                    on_complete=body.on_complete)  # fmt: skip
    workflow, _ = submit_workflow(session, WorkflowRequest(definition, tenant_id=tenant(), actor=principal().key_id,
                                                           request_id=request_id()), now=now,
                                  active_jobs_limit=ext.settings.quota_active_jobs)  # fmt: skip
    session.commit()  # then the jobs are published (core/after_commit.py)
    jobs = {job.workflow_step: job for job in session.scalars(select(Job).where(Job.workflow_id == workflow.id))}
    outcomes = [Submitted(None, created=False, error=refused[i]) if i in refused
                else Submitted(jobs[f"job-{i}"], created=True) for i in range(len(requests))]  # fmt: skip
    return _result(outcomes, workflow.id)
