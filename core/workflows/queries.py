"""Reading workflows: one (with its steps and their jobs' attempts), a tenant's page of them, their events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from core.models import Job
from core.queries import decode_cursor, encode_cursor
from core.workflows.control import WorkflowNotFound
from core.workflows.models import Workflow, WorkflowEvent, WorkflowStep


@dataclass(frozen=True)
class StepView:
    step: WorkflowStep
    attempts: int  # over its jobs
    jobs_by_status: dict[str, int]  # its jobs' statuses now (a retried item counts as its newest job)


@dataclass(frozen=True)
class WorkflowView:
    workflow: Workflow
    steps: list[StepView]

    @property
    def jobs_total(self) -> int:
        return sum(view.step.jobs_total for view in self.steps)

    @property
    def jobs_finished(self) -> int:
        return sum(view.step.jobs_total - view.step.jobs_unfinished for view in self.steps)


def get_workflow(session: Session, workflow_id: uuid.UUID, *, tenant_id: str) -> Workflow:
    workflow = session.scalars(
        select(Workflow).where(Workflow.id == workflow_id, Workflow.tenant_id == tenant_id)
    ).one_or_none()
    if workflow is None:
        raise WorkflowNotFound(f"No workflow with id {workflow_id}.")
    return workflow


def workflow_view(session: Session, workflow_id: uuid.UUID, *, tenant_id: str) -> WorkflowView:
    workflow = get_workflow(session, workflow_id, tenant_id=tenant_id)
    steps = list(
        session.scalars(
            select(WorkflowStep).where(WorkflowStep.workflow_id == workflow_id).order_by(WorkflowStep.position)
        )
    )
    counts: dict[str, dict[str, int]] = {}
    attempts: dict[str, int] = {}
    query = (
        select(Job.workflow_step, Job.status, func.count(), func.sum(Job.attempt))
        .where(Job.workflow_id == workflow_id)
        .group_by(Job.workflow_step, Job.status)
    )
    for step, status, count, tried in session.execute(query):
        step = step or ""
        counts.setdefault(step, {})[status] = count
        attempts[step] = attempts.get(step, 0) + int(tried or 0)
    return WorkflowView(workflow, [StepView(s, attempts.get(s.name, 0), counts.get(s.name, {})) for s in steps])


def list_workflows(
    session: Session, *, tenant_id: str, limit: int, cursor: str | None = None, status: list[str] | None = None
) -> tuple[list[Workflow], str | None]:
    """Newest first, keyset-paginated on (created_at, id)."""
    query = select(Workflow).where(Workflow.tenant_id == tenant_id)
    if status:
        query = query.where(Workflow.status.in_(status))
    if cursor:
        at, workflow_id = decode_cursor(cursor, uuid.UUID)
        query = query.where(tuple_(Workflow.created_at, Workflow.id) < tuple_(at, workflow_id))
    query = query.order_by(Workflow.created_at.desc(), Workflow.id.desc()).limit(limit + 1)
    rows = list(session.scalars(query))
    next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


def list_workflow_events(
    session: Session, workflow_id: uuid.UUID, *, tenant_id: str, after: int = 0, limit: int = 1000
) -> list[WorkflowEvent]:
    get_workflow(session, workflow_id, tenant_id=tenant_id)
    query = (
        select(WorkflowEvent)
        .where(WorkflowEvent.workflow_id == workflow_id, WorkflowEvent.id > after)
        .order_by(WorkflowEvent.id)
        .limit(limit)
    )
    return list(session.scalars(query))


def step_jobs(session: Session, workflow_id: uuid.UUID, step: str, *, limit: int = 100) -> list[Any]:
    """A step's jobs (id, item, status, attempt), in item order: the newest job of each item."""
    rows = session.execute(
        select(Job.id, Job.map_index, Job.status, Job.attempt)
        .where(Job.workflow_id == workflow_id, Job.workflow_step == step)
        .order_by(Job.map_index, Job.created_at)
    ).all()
    latest = {row.map_index: row for row in rows}
    return list(latest.values())[:limit]
