"""/v1/jobs:batch: up to 1,000 jobs in one request and one transaction, with a result per item."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from api.auth import requires
from api.extension import db
from api.jobs import job_request, submit_and_publish
from api.problems import conveyor_problem_body
from api.schemas import BatchItemResult, BatchResult, JobBatchCreate, JobRead
from core.keys import Scope
from core.types import utcnow

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
    outcomes = submit_and_publish(db(), requests, now=now)
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
    )
