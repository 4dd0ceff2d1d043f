"""`dataset_query`: select, derive and filter a dataset's columns in SQL into a new dataset."""

from __future__ import annotations

from core.context import JobContext
from core.datasets.transform import QuerySpec, check_query, run_query
from core.db import TRANSIENT_ERRORS
from core.registry import JobSpec
from tasks.dataset_aggregate import AggregateResult as DerivedResult


def run(payload: QuerySpec, ctx: JobContext) -> DerivedResult:
    output = run_query(ctx.session, payload, job_id=ctx.job_id, tenant_id=ctx.tenant_id)
    return DerivedResult(dataset_id=output.id, row_count=output.row_count)


spec = JobSpec(
    name="dataset_query",
    payload=QuerySpec,
    result=DerivedResult,
    handler=run,
    description="Selects, derives and filters a dataset's columns with safe expressions (arithmetic, comparison, "
    "coalesce, lower/upper, date parts, …) pushed down to SQL; the output is a new dataset (result: its dataset_id) "
    "whose lineage names the dataset and version it read.",
    check=check_query,
    max_attempts=2,
    retry_on=TRANSIENT_ERRORS,
    time_limit=6 * 3600,
)
