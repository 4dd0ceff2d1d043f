"""`dataset_query`: select, derive and filter a dataset's columns in SQL into a new dataset."""

from __future__ import annotations

from core.datasets.transform import QuerySpec, check_query, run_query
from tasks.derived import derived_job_type

spec = derived_job_type(
    "dataset_query",
    QuerySpec,
    run_query,
    check_query,
    "Selects, derives and filters a dataset's columns with safe expressions (arithmetic, comparison, coalesce, "
    "lower/upper, date parts, …) pushed down to SQL; the output is a new dataset (result: its dataset_id) whose "
    "lineage names the dataset and version it read.",
)
