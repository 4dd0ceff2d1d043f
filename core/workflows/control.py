"""A client's orders to a workflow: cancel it, or retry its failed, cancelled and skipped steps."""

from __future__ import annotations

import graphlib
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import metrics
from core.errors import ConveyorError, InvalidTransition
from core.ids import uuid7
from core.jobs import published_alone, record_event, requeue_failed
from core.models import Job
from core.publish import messages_of
from core.status import JobStatus
from core.workflows.advance import Run, cancel_unfinished, flush, locked, release, settle
from core.workflows.models import StepStatus, Workflow, WorkflowStatus, WorkflowStep

W, ST = WorkflowStatus, StepStatus


class WorkflowNotFound(ConveyorError):
    slug, status, title = "not-found", 404, "Not found"


def locked_workflow(session: Session, workflow_id: uuid.UUID, tenant_id: str, now: datetime) -> Run:
    run = locked(session, workflow_id, now, tenant_id=tenant_id)
    if run is None:
        raise WorkflowNotFound(f"No workflow with id {workflow_id}.")
    return run


def cancel_workflow(
    session: Session, workflow_id: uuid.UUID, *, tenant_id: str, actor: str | None, now: datetime
) -> Workflow:
    """Every unfinished step cancelled: waiting steps and jobs not yet running at once, running jobs at their next
    progress check. Cancelling twice is harmless; a finished workflow is a 409."""
    run = locked_workflow(session, workflow_id, tenant_id, now)
    workflow = run.workflow
    if workflow.status == W.CANCELLED:
        return workflow
    if workflow.status != W.RUNNING:
        raise InvalidTransition(f"Workflow {workflow_id} already {workflow.status}; only a running workflow can be "
                                "cancelled.")  # fmt: skip
    workflow.status = W.CANCELLED.value
    workflow.error = {"type": "Cancelled", "message": "cancelled by a client", "actor": actor}
    run.event("workflow_cancelled", actor=actor)
    cancel_unfinished(run, spare_all_done=False)
    settle(run)
    flush(run)
    return workflow


def retry_workflow(
    session: Session, workflow_id: uuid.UUID, *, tenant_id: str, actor: str | None, now: datetime
) -> Workflow:
    """Run a failed or cancelled workflow's unsucceeded steps again, with their parents' stored results: a failed
    job as one more attempt of the same job, a cancelled one as a new job with the same payload, a step that never
    ran (skipped, cancelled while waiting, or not released) released again once its parents succeed."""
    run = locked_workflow(session, workflow_id, tenant_id, now)
    workflow = run.workflow
    if workflow.status not in (W.FAILED, W.CANCELLED):
        raise InvalidTransition(f"Workflow {workflow_id} is {workflow.status}; only a failed or cancelled workflow "
                                "can be retried.")  # fmt: skip
    if workflow.finished_at is None:
        raise InvalidTransition(f"Workflow {workflow_id} still has running steps (cancelled at their next progress "
                                "check); retry it once they have stopped.")  # fmt: skip
    order = graphlib.TopologicalSorter({s.name: set(s.depends_on) for s in run.steps.values()}).static_order()
    workflow.status, workflow.failed_step, workflow.error, workflow.finished_at = W.RUNNING.value, None, None, None
    workflow.retries += 1
    run.event("workflow_retried", actor=actor, retries=workflow.retries)
    for name in order:
        step = run.steps[name]
        parents_again = any(run.steps[parent].status != ST.SUCCEEDED for parent in step.depends_on)
        if step.status == ST.SUCCEEDED and not (step.release_when == "all_done" and parents_again):
            continue  # (an on_complete step runs again after the steps it reports on)
        if step.released_at is not None and step.jobs_total and step.status != ST.SUCCEEDED:
            _rerun_jobs(run, step, actor)
        else:
            _wait_again(run, step)
    for step in run.steps.values():
        if step.status == ST.WAITING and step.parents_pending == 0:
            release(run, step)
    settle(run)
    flush(run)
    return workflow


def _rerun_jobs(run: Run, step: WorkflowStep, actor: str | None) -> None:
    """A released step's jobs that did not succeed run again; its succeeded items keep their results."""
    # Locked while the workflow's lock is held: finished jobs, which no transaction that waits for a workflow holds.
    query = (
        select(Job)
        .where(Job.workflow_id == run.workflow.id, Job.workflow_step == step.name)
        .order_by(Job.map_index, Job.created_at)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    latest: dict[int | None, Job] = {}
    for job in run.session.scalars(query):
        latest[job.map_index] = job  # a cancelled item replaced by an earlier retry: its newest job counts
    again: list[Job] = []
    for job in latest.values():
        if job.status == JobStatus.FAILED:
            requeue_failed(run.session, job, by="workflow retry", actor=actor, now=run.now)
            again.append(job)
        elif job.status == JobStatus.CANCELLED:
            again.append(_replacement(run, job, actor))
    step.status, step.error, step.finished_at = ST.RUNNING.value, None, None
    step.jobs_failed = step.jobs_cancelled = 0
    step.jobs_total = step.jobs_succeeded + len(again)
    if step.map_over is None and again:
        step.job_id = again[0].id
    run.released.extend(messages_of(again))
    run.event("step_retried", step.name, jobs=len(again))


def _replacement(run: Run, cancelled: Job, actor: str | None) -> Job:
    """A new job for a cancelled one (a cancelled job never runs again): same step, item, payload and settings."""
    job = Job(id=uuid7(), tenant_id=cancelled.tenant_id, type=cancelled.type, queue=cancelled.queue,
              priority=cancelled.priority, status=JobStatus.QUEUED.value, payload=cancelled.payload, attempt=0,
              max_attempts=cancelled.max_attempts, message_jobs=1, request_id=cancelled.request_id,
              workflow_id=cancelled.workflow_id, workflow_step=cancelled.workflow_step,
              map_index=cancelled.map_index, cancel_requested=False, created_at=run.now,
              updated_at=run.now)  # fmt: skip
    published_alone(job, run.now)
    run.session.add(job)
    run.session.flush()
    metrics.count(run.session, metrics.SUBMITTED, job.type, job.queue)
    detail = {"by": "workflow retry", "replaces": str(cancelled.id), "actor": actor}
    record_event(run.session, job.id, JobStatus.QUEUED.value, detail=detail, now=run.now)
    return job


def _wait_again(run: Run, step: WorkflowStep) -> None:
    """A step that never ran waits for its parents again (those that are being retried count as unfinished)."""

    def satisfied(parent: WorkflowStep) -> bool:
        if step.release_when == "all_done":
            return ST(parent.status).finished
        return parent.status == ST.SUCCEEDED

    step.status, step.error, step.finished_at, step.released_at = ST.WAITING.value, None, None, None
    step.jobs_total = step.jobs_succeeded = step.jobs_failed = step.jobs_cancelled = 0
    step.parents_pending = sum(1 for name in set(step.depends_on) if not satisfied(run.steps[name]))
