"""Pydantic models of /v1/workflows: the definition submitted (core's), and workflows, steps and events as read."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from api.schemas import Strict
from core.workflows.definition import WorkflowDefinition
from core.workflows.models import StepStatus, Workflow, WorkflowEvent, WorkflowStatus
from core.workflows.queries import StepView, WorkflowView


class WorkflowCreate(Strict, WorkflowDefinition):
    """A named DAG of steps, each a job; see POST /v1/workflows."""


class StepJobs(BaseModel):
    total: int = Field(description="Jobs the step made: one, or one per item of its map (0 until it is released).")
    succeeded: int
    failed: int
    cancelled: int
    unfinished: int


class StepRead(BaseModel):
    name: str
    type: str
    status: StepStatus
    depends_on: list[str]
    mapped: bool = Field(description="Whether the step fans out over a list (`map`).")
    job_id: uuid.UUID | None = Field(description="An unmapped step's job, once released (its newest, after a retry).")
    jobs: StepJobs
    attempts: int = Field(description="Attempts of the step's jobs, summed.")
    error: dict[str, Any] | None = Field(
        description="Why it failed, was cancelled or skipped: its first failed job's error (with `job_id`), or why "
        "it could not be released (e.g. ReferenceMissing, naming the reference)."
    )
    released_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, view: StepView) -> StepRead:
        step = view.step
        jobs = StepJobs(total=step.jobs_total, succeeded=step.jobs_succeeded, failed=step.jobs_failed,
                        cancelled=step.jobs_cancelled, unfinished=step.jobs_unfinished)  # fmt: skip
        return cls(name=step.name, type=step.type, status=StepStatus(step.status), depends_on=step.depends_on,
                   mapped=step.map_over is not None, job_id=step.job_id, jobs=jobs, attempts=view.attempts,
                   error=step.error, released_at=step.released_at, finished_at=step.finished_at)  # fmt: skip


class WorkflowProgress(BaseModel):
    steps_finished: int
    steps_total: int
    jobs_finished: int
    jobs_total: int = Field(description="Jobs made so far (a mapped step's count is known once it is released).")


class WorkflowSummary(BaseModel):
    id: uuid.UUID
    name: str
    status: WorkflowStatus
    failure_policy: str
    failed_step: str | None = Field(description="The first step that failed (or was cancelled or not released).")
    error: dict[str, Any] | None
    retries: int
    request_id: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = Field(description="When every step had finished.")

    @classmethod
    def fields_of(cls, workflow: Workflow) -> dict[str, Any]:
        return dict(id=workflow.id, name=workflow.name, status=WorkflowStatus(workflow.status),
                    failure_policy=workflow.failure_policy, failed_step=workflow.failed_step, error=workflow.error,
                    retries=workflow.retries, request_id=workflow.request_id, created_at=workflow.created_at,
                    updated_at=workflow.updated_at, finished_at=workflow.finished_at)  # fmt: skip

    @classmethod
    def of(cls, workflow: Workflow) -> WorkflowSummary:
        return cls(**cls.fields_of(workflow))


class WorkflowRead(WorkflowSummary):
    progress: WorkflowProgress
    steps_by_status: dict[str, int]
    steps: list[StepRead]

    @classmethod
    def of_view(cls, view: WorkflowView) -> WorkflowRead:
        steps = [StepRead.of(step) for step in view.steps]
        by_status: dict[str, int] = {}
        for step in steps:
            by_status[step.status.value] = by_status.get(step.status.value, 0) + 1
        finished = sum(1 for step in steps if step.status.finished)
        progress = WorkflowProgress(steps_finished=finished, steps_total=len(steps), jobs_finished=view.jobs_finished,
                                    jobs_total=view.jobs_total)  # fmt: skip
        return cls(**cls.fields_of(view.workflow), progress=progress, steps_by_status=by_status, steps=steps)


class WorkflowPage(BaseModel):
    items: list[WorkflowSummary]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class WorkflowListQuery(Strict):
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=500)
    status: str | None = Field(default=None, description="Comma-separated statuses, e.g. `running,failed`.")

    @field_validator("status")
    @classmethod
    def _known_statuses(cls, value: str | None) -> str | None:
        if value is not None:
            unknown = [s for s in value.split(",") if s not in {m.value for m in WorkflowStatus}]
            if unknown:
                known = ", ".join(s.value for s in WorkflowStatus)
                raise ValueError(f"unknown status {', '.join(unknown)}; one of {known}")
        return value


class WorkflowEventRead(BaseModel):
    id: int
    step: str | None
    kind: str = Field(description="workflow_submitted, step_released, step_succeeded, step_failed, step_skipped, "
                      "step_cancelled, workflow_failed, workflow_cancelled, workflow_retried, …")  # fmt: skip
    detail: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def of(cls, event: WorkflowEvent) -> WorkflowEventRead:
        return cls(id=event.id, step=event.step, kind=event.kind, detail=event.detail, created_at=event.created_at)


class WorkflowEventList(BaseModel):
    items: list[WorkflowEventRead]


class WorkflowEventQuery(Strict):
    after: int = Field(default=0, ge=0, description="Only events after this id (the last one you have).")
    limit: int = Field(default=1000, ge=1, le=1000)
