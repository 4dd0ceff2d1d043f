"""Moving a workflow forward: a step released by the transaction that finishes its last parent, failure policies,
and cancellation of what is left.

Every change to a workflow happens under its row's lock (`locked`), taken after the job row that changed, so the
transactions that finish a workflow's jobs take turns: two parents finishing at the same instant on two workers
decrement their dependant's `parents_pending` one after the other, and only the one that reaches zero releases it.
The job's own transition is a conditional update that succeeds once, and the release is in its transaction, so a
release happens exactly once, and never for a rolled-back attempt.

Lock order, to rule out deadlocks: a job row, then its workflow. Holding a workflow's lock, other jobs' rows are
only taken with SKIP LOCKED (`cancel_unfinished`); one another transaction holds is left to the maintenance tick
(`sweep_pending`).

A process that finishes workflow jobs puts its `Releaser` in its sessions' info (`session_info`): what a release
needs (job types, queues) and how the released jobs' messages are published once the transaction commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import metrics
from core.after_commit import publish_after_commit, session_publisher
from core.errors import ConveyorError
from core.models import Job, JobResult
from core.queue import Message
from core.registry import Registry
from core.statements.shared import StepCount, count_succeeded_locked
from core.status import UNFINISHED_STATUSES, JobStatus
from core.workflows import refs
from core.workflows.models import StepStatus, Workflow, WorkflowEvent, WorkflowStatus, WorkflowStep

RELEASER = "conveyor_workflow_releaser"  # session.info key: the process's Releaser
W, ST = WorkflowStatus, StepStatus


@dataclass(frozen=True)
class Releaser:
    """What releasing a step needs in this process: job types and queues to build its jobs, the map bound and the
    jobs per message; the session publishes them after its commit (core.publish.session_publisher)."""

    registry: Registry
    known_queues: list[str]
    map_limit: int
    jobs_per_message: int


def session_info(releaser: Releaser, publish: Callable[[list[Message]], object]) -> dict[str, Any]:
    """The `info` of a process's sessions (core.db.make_sessionmaker): how steps are released, and published."""
    return {RELEASER: releaser, **session_publisher(publish)}


def releaser_of(session: Session) -> Releaser:
    releaser = session.info.get(RELEASER)
    if releaser is None:
        raise RuntimeError("a workflow's job finished in a session without a Releaser (core.workflows.advance)")
    assert isinstance(releaser, Releaser)  # noqa: S101
    return releaser


@dataclass
class Run:
    """A locked workflow and its steps, in one transaction."""

    session: Session
    workflow: Workflow
    steps: dict[str, WorkflowStep]  # by position
    now: datetime
    released: list[Message] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.workflow.status == W.RUNNING

    def event(self, kind: str, step: str | None = None, **detail: Any) -> None:
        row = WorkflowEvent(workflow_id=self.workflow.id, step=step, kind=kind, detail=detail or None,
                            created_at=self.now)  # fmt: skip
        self.session.add(row)

    def dependants(self, name: str) -> Iterator[WorkflowStep]:
        return (step for step in self.steps.values() if name in step.depends_on)


def locked(session: Session, workflow_id: uuid.UUID, now: datetime, *, tenant_id: str | None = None) -> Run | None:
    """The workflow (of `tenant_id`, when given) and its steps, its row locked until the transaction ends."""
    query = select(Workflow).where(Workflow.id == workflow_id).with_for_update()
    if tenant_id is not None:
        query = query.where(Workflow.tenant_id == tenant_id)
    workflow = session.scalars(query.execution_options(populate_existing=True)).one_or_none()
    if workflow is None:
        return None
    steps = session.scalars(
        select(WorkflowStep)
        .where(WorkflowStep.workflow_id == workflow_id)
        .order_by(WorkflowStep.position)
        .execution_options(populate_existing=True)
    )
    return Run(session, workflow, {step.name: step for step in steps}, now)


def job_finished(session: Session, job: Job | Any, status: JobStatus, now: datetime) -> None:
    """A workflow job reached `status` (succeeded, failed or cancelled) in this transaction: count it on its step,
    apply the failure policy, release what it was the last parent of. `job` has the workflow's columns."""
    if job.workflow_id is None:
        return
    if status is JobStatus.SUCCEEDED:
        # The common case, each item of a map: one statement takes the workflow's lock and counts the job on its
        # step; only the step's last job goes on. (None: the workflow was deleted.)
        assert job.workflow_step is not None  # noqa: S101 - a workflow's job runs for one of its steps
        count = StepCount(job.workflow_id, job.workflow_step)
        left = session.connection().execute(count_succeeded_locked(), count.params()).scalar()
        if left is None or left > 0:
            return
    run = locked(session, job.workflow_id, now)
    if run is None or job.workflow_step not in run.steps:
        return  # the workflow was deleted
    step = run.steps[job.workflow_step]
    if status is not JobStatus.SUCCEEDED:
        _count_job(run, step, job, status)
        if run.running and run.workflow.failure_policy == "fail_fast":
            fail(run, step, step.error or {})
    if step.status == ST.RUNNING and step.jobs_unfinished == 0:
        finish_step(run, step)
    settle(run)
    flush(run)


def _count_job(run: Run, step: WorkflowStep, job: Job | Any, status: JobStatus) -> None:
    """A job that failed or was cancelled, on its step (with the first one's error); a success is one UPDATE."""
    if status is JobStatus.FAILED:
        step.jobs_failed += 1
    else:
        step.jobs_cancelled += 1
    if step.error is None:
        error = job.error or {"type": "Cancelled", "message": f"job {job.id} was cancelled"}
        step.error = {**error, "job_id": str(job.id)}


def finish_step(run: Run, step: WorkflowStep) -> None:
    """Every job of the step has finished: its outcome, then what it means for its dependants."""
    if step.jobs_failed:
        step.status = ST.FAILED.value
    elif step.jobs_cancelled:
        step.status = ST.CANCELLED.value
    else:
        step.status = ST.SUCCEEDED.value
    _finished(run, step)


def _finished(run: Run, step: WorkflowStep) -> None:
    """A step reached its final status: its dependants count it, and are released, skipped or left waiting."""
    step.finished_at = run.now
    run.event(f"step_{step.status}", step.name, **({"error": step.error} if step.error else {}))
    succeeded = step.status == ST.SUCCEEDED
    if not succeeded and run.running and run.workflow.failure_policy == "fail_fast":
        fail(run, step, step.error or {})
    for dependant in run.dependants(step.name):
        if dependant.status != ST.WAITING:
            continue
        if succeeded or dependant.release_when == "all_done":
            dependant.parents_pending -= 1
            if dependant.parents_pending == 0 and (run.running or dependant.release_when == "all_done"):
                release(run, dependant)
        else:  # it needs this parent's result, which will never come
            dependant.status = ST.SKIPPED.value
            dependant.error = {"type": "Skipped", "message": f"step {step.name!r} {step.status}"}
            _finished(run, dependant)


def fail(run: Run, step: WorkflowStep, error: dict[str, Any]) -> None:
    """fail_fast: the workflow fails, naming the step, and every unfinished step is cancelled (an on_complete step
    still runs once the rest has finished)."""
    workflow = run.workflow
    workflow.status, workflow.failed_step = W.FAILED.value, step.name
    workflow.error = {"type": error.get("type", "StepFailed"), "step": step.name,
                      "message": f"step {step.name!r} failed: {error.get('message', '')}".rstrip(": ")}  # fmt: skip
    run.event("workflow_failed", step.name, error=workflow.error)
    cancel_unfinished(run, spare_all_done=True)


def cancel_unfinished(run: Run, *, spare_all_done: bool) -> None:
    """Cancel the waiting steps and the unfinished jobs: a job not yet running at once, a running one at its next
    progress check. A job row another transaction holds is skipped (never waited for, see the lock order) and left
    to the maintenance tick's sweep."""
    for step in run.steps.values():
        if step.status == ST.WAITING and not (spare_all_done and step.release_when == "all_done"):
            step.status = ST.CANCELLED.value
            step.finished_at = run.now
            run.event("step_cancelled", step.name)
    flush(run)
    uncancelled = (Job.workflow_id == run.workflow.id, Job.status.in_(UNFINISHED_STATUSES), ~Job.cancel_requested)
    query = select(Job).where(*uncancelled).with_for_update(skip_locked=True)
    reason = {"type": "WorkflowCancelled", "message": f"workflow {run.workflow.id} {run.workflow.status}"}
    for job in run.session.scalars(query.execution_options(populate_existing=True)).all():
        _cancel_job(run, job, reason)
    left = run.session.scalar(select(func.count()).select_from(Job).where(*uncancelled))  # the rows skipped
    run.workflow.sweep_pending = bool(left)


def _cancel_job(run: Run, job: Job, reason: dict[str, Any]) -> None:
    from core.jobs import move, record_event  # core.jobs calls this module when a workflow's job finishes

    detail = {"by": "workflow", "workflow_id": str(run.workflow.id)}
    job.cancel_requested, job.updated_at = True, run.now
    if job.status == JobStatus.RUNNING:
        record_event(run.session, job.id, "cancel_requested", attempt=job.attempt, worker=job.worker, detail=detail,
                     now=run.now)  # fmt: skip
        return
    detail["from"] = move(job, JobStatus.CANCELLED, run.now).value
    job.finished_at, job.error = run.now, reason
    metrics.count(run.session, metrics.CANCELLED, job.type, job.queue)
    record_event(run.session, job.id, JobStatus.CANCELLED.value, attempt=job.attempt, detail=detail, now=run.now)
    step = run.steps.get(job.workflow_step or "")
    if step is not None:
        _count_job(run, step, job, JobStatus.CANCELLED)
        if step.status == ST.RUNNING and step.jobs_unfinished == 0:
            finish_step(run, step)


def settle(run: Run) -> None:
    """Once every step has finished, so has the workflow: succeeded if every step did, else failed (naming the
    first failed step), unless it already failed or was cancelled."""
    workflow = run.workflow
    if workflow.finished_at is not None or any(not ST(s.status).finished for s in run.steps.values()):
        return
    workflow.finished_at = run.now
    if workflow.status == W.RUNNING:
        failed = [s for s in run.steps.values() if s.status != ST.SUCCEEDED]
        if not failed:
            workflow.status = W.SUCCEEDED.value
        else:
            first = next((s for s in failed if s.status == ST.FAILED), failed[0])
            workflow.status, workflow.failed_step = W.FAILED.value, first.name
            workflow.error = {"type": (first.error or {}).get("type", "StepFailed"), "step": first.name,
                              "message": f"step {first.name!r} {first.status}"}  # fmt: skip
    run.event(f"workflow_{workflow.status}" if workflow.status == W.SUCCEEDED else "workflow_finished",
              status=workflow.status)  # fmt: skip


def flush(run: Run) -> None:
    """Write the run's changes, and queue the messages of the jobs it released for after the commit."""
    run.workflow.updated_at = run.now
    run.session.flush()
    publish_after_commit(run.session, run.released)
    run.released = []


# --- release -----------------------------------------------------------------------------------------------------


class StepNotReleased(Exception):
    """Why a step's map could not make its jobs (not a list, or too long): the step fails with it."""


def release(run: Run, step: WorkflowStep, *, active_jobs_limit: int = 0) -> None:
    """Resolve the step's references against its parents' stored results, make its job (or one per item of its
    map), and queue their messages; a step that cannot be released fails, naming why."""
    from core.submit import JobRequest, check_request, submit_jobs  # core.submit → core.publish → core.jobs → here

    releaser = releaser_of(run.session)
    workflow = run.workflow
    try:
        scope = _scope(run, step)
        items: list[Any] | None = None
        if step.map_over is not None:
            items = refs.resolve(step.map_over, scope)
            if not isinstance(items, list):
                raise StepNotReleased(f"step {step.name!r}: map is not a list but {type(items).__name__}")
            if len(items) > releaser.map_limit:
                raise StepNotReleased(f"step {step.name!r}: map has {len(items)} items, over "
                                      f"CONVEYOR_WORKFLOW_MAP_LIMIT ({releaser.map_limit})")  # fmt: skip
        places = list(enumerate(items)) if items is not None else [(None, None)]
        payloads = [refs.resolve(step.payload, refs.Scope(scope.results, item, index, scope.batch))
                    for index, item in places]  # fmt: skip
    except refs.RefMissing as exc:
        _not_released(run, step, {"type": "ReferenceMissing", "message": str(exc)})
        return
    except StepNotReleased as exc:
        _not_released(run, step, {"type": "StepNotReleased", "message": str(exc)})
        return
    requests = [
        JobRequest(type=step.type, payload=payload, priority=step.priority, queue=step.queue,
                   max_attempts=step.max_attempts, tenant_id=workflow.tenant_id, actor=workflow.actor,
                   request_id=workflow.request_id, workflow_id=workflow.id, workflow_step=step.name, map_index=index)
        for (index, _), payload in zip(places, payloads, strict=True)
    ]  # fmt: skip
    try:  # every job of the step is checked before any is made: all of them, or none
        for request in requests:
            check_request(run.session, releaser.registry, releaser.known_queues, request)
    except ConveyorError as exc:
        _not_released(run, step, {"type": type(exc).__name__, "message": exc.detail, "errors": exc.errors})
        return
    submission = submit_jobs(run.session, registry=releaser.registry, known_queues=releaser.known_queues,
                             requests=requests, now=run.now, active_jobs_limit=active_jobs_limit,
                             jobs_per_message=releaser.jobs_per_message)  # fmt: skip
    refused = next((o.error for o in submission.outcomes if o.error is not None), None)
    if refused is not None:  # only a quota, at submit: the caller's transaction fails with it
        raise refused
    made = [o.job for o in submission.outcomes if o.job is not None]
    step.status, step.released_at = ST.RUNNING.value, run.now
    step.jobs_total = len(made)
    step.jobs_succeeded = step.jobs_failed = step.jobs_cancelled = 0
    step.job_id = made[0].id if items is None else None
    run.released.extend(submission.messages)
    run.event("step_released", step.name, jobs=len(requests))
    if not made:  # a map over an empty list: nothing to run, an empty list of results
        finish_step(run, step)


def _not_released(run: Run, step: WorkflowStep, error: dict[str, Any]) -> None:
    step.status, step.error = ST.FAILED.value, error
    _finished(run, step)


def _scope(run: Run, step: WorkflowStep) -> refs.Scope:
    """The results the step's references name (each step's once), and a batch's summary for an on_complete step."""
    found = [*refs.find(step.payload), *(refs.find(step.map_over) if step.map_over is not None else ())]
    named = {ref.step for _, ref in found if ref.step is not None}
    results = {name: results_of(run.session, run.workflow.id, run.steps[name]) for name in named if name in run.steps}
    batch = _batch(run, step) if any(ref.head == "batch" for _, ref in found) else None
    return refs.Scope({name: value for name, value in results.items() if value is not MISSING}, batch=batch)


MISSING = object()


def results_of(session: Session, workflow_id: uuid.UUID, step: WorkflowStep) -> Any:
    """A succeeded step's stored result: its job's, or a mapped step's items' results as a list, in order."""
    rows = session.execute(
        select(JobResult.data)
        .join(Job, Job.id == JobResult.job_id)
        .where(Job.workflow_id == workflow_id, Job.workflow_step == step.name, Job.status == JobStatus.SUCCEEDED)
        .order_by(Job.map_index)
    ).scalars()
    data = list(rows)
    if step.map_over is not None:
        return data
    return data[0] if data else MISSING


def _batch(run: Run, step: WorkflowStep) -> dict[str, Any]:
    """The jobs of every other step by outcome (an item retried as a new job counts once, as its newest job): what
    a batch's on_complete receives."""
    rows = run.session.execute(
        select(Job.id, Job.status, Job.workflow_step, Job.map_index)
        .where(Job.workflow_id == run.workflow.id, Job.workflow_step != step.name)
        .order_by(Job.created_at)
    ).all()
    latest = {(row.workflow_step, row.map_index): row for row in rows}
    by_status: dict[str, list[str]] = {"succeeded": [], "failed": [], "cancelled": []}
    for row in latest.values():
        by_status.setdefault(row.status, []).append(str(row.id))
    return {"total": len(latest), **{status: len(ids) for status, ids in by_status.items()},
            **{f"{status}_ids": ids for status, ids in by_status.items()}}  # fmt: skip


def sweep_cancellations(session: Session, now: datetime, *, limit: int = 50) -> int:
    """The maintenance tick's part of a cancellation: the jobs `cancel_unfinished` had to skip (their rows were
    held by another transaction then). Returns how many workflows it looked at."""
    pending = session.scalars(select(Workflow.id).where(Workflow.sweep_pending).limit(limit)).all()
    for workflow_id in pending:
        run = locked(session, workflow_id, now)
        if run is not None and run.workflow.sweep_pending:
            cancel_unfinished(run, spare_all_done=run.workflow.status == W.FAILED)
            settle(run)
            flush(run)
    return len(pending)
