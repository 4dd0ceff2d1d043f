"""`dataset_join`: an inner or left join of two datasets on named keys, in SQL, into a new dataset."""

from __future__ import annotations

from core.context import JobContext
from core.datasets.join import JoinSpec, check_join, run_join
from core.db import TRANSIENT_ERRORS
from core.registry import JobSpec
from tasks.dataset_aggregate import AggregateResult as DerivedResult


def run(payload: JoinSpec, ctx: JobContext) -> DerivedResult:
    output = run_join(ctx.session, payload, job_id=ctx.job_id, tenant_id=ctx.tenant_id)
    return DerivedResult(dataset_id=output.id, row_count=output.row_count)


spec = JobSpec(
    name="dataset_join",
    payload=JoinSpec,
    result=DerivedResult,
    handler=run,
    description="Joins two datasets (inner or left) on named keys in SQL, keeping the columns named (default all); "
    "the output is a new dataset (result: its dataset_id) whose lineage names both datasets and the versions read.",
    check=check_join,
    max_attempts=2,
    retry_on=TRANSIENT_ERRORS,
    time_limit=6 * 3600,
)
