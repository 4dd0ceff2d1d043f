"""Submitting a workflow: validated whole, then the workflow, its steps and its first layer's jobs in the caller's
transaction (flushed, not committed; the released jobs' messages go out after the commit)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import ConveyorError, IdempotencyMismatch
from core.registry import Registry
from core.workflows import refs
from core.workflows.advance import Run, flush, release, releaser_of, settle
from core.workflows.definition import ON_COMPLETE, WorkflowDefinition, WorkflowInvalid, validate
from core.workflows.models import StepStatus, Workflow, WorkflowStatus, WorkflowStep


@dataclass(frozen=True)
class WorkflowRequest:
    definition: WorkflowDefinition
    tenant_id: str
    actor: str | None = None
    request_id: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None


def submit_workflow(
    session: Session, request: WorkflowRequest, *, now: datetime, active_jobs_limit: int = 0
) -> tuple[Workflow, bool]:
    """Returns (workflow, created): created is False when the Idempotency-Key names a workflow made from the same
    request. Raises WorkflowInvalid (422, naming the step) for a definition that cannot run."""
    existing = _by_key(session, request)
    if existing is not None:
        return existing, False
    releaser = releaser_of(session)
    definition = request.definition
    validate(definition, releaser.registry, releaser.known_queues, releaser.map_limit)
    _check_payloads(session, definition, releaser.registry, request.tenant_id)
    workflow = Workflow(id=uuid.uuid4(), tenant_id=request.tenant_id, name=definition.name,
                        status=WorkflowStatus.RUNNING.value, failure_policy=definition.failure_policy,
                        steps_total=len(definition.steps) + (definition.on_complete is not None), retries=0,
                        sweep_pending=False, idempotency_key=request.idempotency_key,
                        request_hash=request.request_hash, actor=request.actor, request_id=request.request_id,
                        created_at=now, updated_at=now)  # fmt: skip
    steps = [
        WorkflowStep(workflow_id=workflow.id, name=step.name, position=position, type=step.type,
                     payload=step.payload, queue=step.queue, priority=step.priority, max_attempts=step.max_attempts,
                     map_over=step.map, depends_on=list(step.depends_on), release_when="all_succeeded",
                     parents_pending=len(set(step.depends_on)), status=StepStatus.WAITING.value)
        for position, step in enumerate(definition.steps)
    ]  # fmt: skip
    if definition.on_complete is not None:
        done = definition.on_complete
        parents = [step.name for step in definition.steps]
        steps.append(WorkflowStep(workflow_id=workflow.id, name=ON_COMPLETE, position=len(steps), type=done.type,
                                  payload=done.payload, queue=done.queue, priority=done.priority,
                                  max_attempts=done.max_attempts, map_over=None, depends_on=parents,
                                  release_when="all_done", parents_pending=len(parents),
                                  status=StepStatus.WAITING.value))  # fmt: skip
    try:
        with session.begin_nested():
            session.add(workflow)
            session.flush()
    except IntegrityError:  # a concurrent request with the same Idempotency-Key won
        existing = _by_key(session, request)
        if existing is None:
            raise
        return existing, False
    session.add_all(steps)
    run = Run(session, workflow, {step.name: step for step in steps}, now)
    run.event("workflow_submitted", steps=len(steps), failure_policy=workflow.failure_policy, actor=request.actor)
    roots = [step for step in steps if step.parents_pending == 0]
    for step in roots:
        if step.status == StepStatus.WAITING:
            release(run, step, active_jobs_limit=active_jobs_limit)
    refused = next((step for step in roots if step.status == StepStatus.FAILED), None)
    if refused is not None:  # e.g. a mapped item's payload: refused at submit, like any other payload
        message = (refused.error or {}).get("message", "")
        raise WorkflowInvalid(f"The workflow is invalid: step {refused.name!r}: {message}",
                              errors=[{"field": f"steps[{refused.position}]", "message": message}])  # fmt: skip
    settle(run)
    flush(run)
    return workflow, True


def _check_payloads(session: Session, definition: WorkflowDefinition, registry: Registry, tenant_id: str) -> None:
    """The job types' own checks (e.g. that a dataset is the tenant's) of every payload complete at submit."""
    for index, step in enumerate(definition.steps):
        check = registry.get(step.type).check
        if check is None or step.map is not None or any(refs.find(step.payload)):
            continue
        try:
            check(registry.get(step.type).payload.model_validate(step.payload), session, tenant_id)
        except ConveyorError as exc:
            fallback = [{"field": f"steps[{index}].payload", "message": exc.detail}]
            errors = [{**e, "field": f"steps[{index}].{e['field']}"} for e in exc.errors] or fallback
            raise WorkflowInvalid(f"The workflow is invalid: step {step.name!r}: {exc.detail}", errors=errors) from None


def _by_key(session: Session, request: WorkflowRequest) -> Workflow | None:
    if request.idempotency_key is None:
        return None
    query = select(Workflow).where(Workflow.tenant_id == request.tenant_id,
                                   Workflow.idempotency_key == request.idempotency_key)  # fmt: skip
    existing = session.scalars(query).one_or_none()
    if existing is not None and existing.request_hash != request.request_hash:
        raise IdempotencyMismatch(
            "This Idempotency-Key was already used with a different workflow. Use a new key for a new workflow."
        )
    return existing
