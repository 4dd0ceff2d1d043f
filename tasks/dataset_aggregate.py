"""`dataset_aggregate`: group, filter and summarise a dataset in SQL into a new dataset."""

from __future__ import annotations

from core.datasets.aggregate import AggregateSpec, check_aggregate, run_aggregate
from tasks.derived import derived_job_type

spec = derived_job_type(
    "dataset_aggregate",
    AggregateSpec,
    run_aggregate,
    check_aggregate,
    "Groups a dataset by columns (and a time bucket) with count, count_distinct, sum, avg, min, max, after filters; "
    "the output is a new dataset (result: its dataset_id).",
)
