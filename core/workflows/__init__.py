"""Workflows: DAGs of jobs kept in the ledger. A step is released by the transaction that finishes its last parent
(core/workflows/advance.py), under the workflow row's lock, so a fan-in fires exactly once and no result backend or
polling is involved."""

# core.models imports core.workflows.models at its end (jobs.workflow_id references the workflows table, and one
# metadata holds both): importing it first here makes either import order work.
import core.models  # noqa: F401
