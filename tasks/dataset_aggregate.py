"""`dataset_aggregate`: group, filter and summarise a dataset in SQL into a new dataset."""

from __future__ import annotations

import uuid

from pydantic import BaseModel

from core.context import JobContext
from core.datasets.aggregate import AggregateSpec, check_aggregate, run_aggregate
from core.db import TRANSIENT_ERRORS
from core.registry import JobSpec


class AggregateResult(BaseModel):
    dataset_id: uuid.UUID
    row_count: int


def run(payload: AggregateSpec, ctx: JobContext) -> AggregateResult:
    output = run_aggregate(ctx.session, payload, job_id=ctx.job_id, tenant_id=ctx.tenant_id)
    return AggregateResult(dataset_id=output.id, row_count=output.row_count)


spec = JobSpec(
    name="dataset_aggregate",
    payload=AggregateSpec,
    result=AggregateResult,
    handler=run,
    description="Groups a dataset by columns (and a time bucket) with count, count_distinct, sum, avg, min, max, "
    "after filters; the output is a new dataset (result: its dataset_id).",
    check=check_aggregate,
    max_attempts=2,
    retry_on=TRANSIENT_ERRORS,
    time_limit=6 * 3600,
)
