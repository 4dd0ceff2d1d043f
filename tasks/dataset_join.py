"""`dataset_join`: an inner or left join of two datasets on named keys, in SQL, into a new dataset."""

from __future__ import annotations

from core.datasets.join import JoinSpec, check_join, run_join
from tasks.derived import derived_job_type

spec = derived_job_type(
    "dataset_join",
    JoinSpec,
    run_join,
    check_join,
    "Joins two datasets (inner or left) on named keys in SQL, keeping the columns named (default all); the output is "
    "a new dataset (result: its dataset_id) whose lineage names both datasets and the versions read.",
)
