"""/v1/workflows: submit a DAG of jobs, list and read workflows, their events and live stream, cancel, retry."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import Response, request

from api.auth import principal, requires, tenant
from api.extension import conveyor, db
from api.job_stream import follow
from api.jobs import idempotency_key
from api.request_log import request_id
from api.workflow_schemas import (
    WorkflowCreate,
    WorkflowEventList,
    WorkflowEventQuery,
    WorkflowEventRead,
    WorkflowListQuery,
    WorkflowPage,
    WorkflowRead,
    WorkflowSummary,
)
from core.keys import Scope
from core.submit import request_fingerprint
from core.types import utcnow
from core.workflows.control import WorkflowNotFound, cancel_workflow, retry_workflow
from core.workflows.queries import list_workflow_events, list_workflows, workflow_view
from core.workflows.submit import WorkflowRequest, submit_workflow

bp = APIBlueprint("workflows", __name__, url_prefix="/v1/workflows", tag="Workflows")

STREAM_RESPONSE: Any = {
    "description": "`event: workflow` with the workflow as JSON (the body of GET /v1/workflows/{id}) whenever it "
    "changes; the stream ends once every step has finished.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def parse_workflow_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise WorkflowNotFound(f"No workflow with id {raw!r} (workflow ids are UUIDs).") from None


def workflow_response(workflow_id: uuid.UUID, status: int) -> Response:
    body = WorkflowRead.of_view(workflow_view(db(), workflow_id, tenant_id=tenant())).model_dump_json()
    location = f"{request.script_root}{bp.url_prefix}/{workflow_id}"
    return Response(body, status=status, mimetype="application/json", headers={"Location": location})


@bp.post("")
@requires(Scope.JOBS_WRITE)
@bp.input(WorkflowCreate, location="json", arg_name="body")
@bp.output(WorkflowRead, status_code=202, description="Accepted: its first steps' jobs are queued; poll the Location.")
@bp.doc(
    summary="Submit a workflow",
    description="A named DAG of steps, each a job (type, payload, queue, priority, max_attempts) with `depends_on`. "
    "The whole definition is validated first (unknown types, payloads against their schemas, missing, duplicate "
    "or self dependencies, cycles, references): a 422 names the step. Then, in one transaction, the workflow, its "
    "steps and the jobs of every step without parents; each later step is released by the transaction that "
    "finishes its last parent. `map` fans a step out over a list; `on_complete` runs once everything else has "
    "finished. Send an Idempotency-Key to make a retried submit safe.",
    responses={200: "The Idempotency-Key names an earlier identical request; the body is that workflow",
               415: "Not JSON", 429: "Over the tenant's quota of unfinished jobs"},
)  # fmt: skip
def create(body: WorkflowCreate) -> Any:
    key = idempotency_key()
    fingerprint = request_fingerprint(body.model_dump(mode="json")) if key else None
    ext = conveyor()
    session = db()
    workflow_request = WorkflowRequest(body, tenant_id=tenant(), actor=principal().key_id,
                                       request_id=request_id(), idempotency_key=key,
                                       request_hash=fingerprint)  # fmt: skip
    workflow, created = submit_workflow(session, workflow_request, now=utcnow(),
                                        active_jobs_limit=ext.settings.quota_active_jobs)  # fmt: skip
    session.commit()  # then its first jobs are published (core/workflows/advance.py)
    return workflow_response(workflow.id, 202 if created else 200)


@bp.get("")
@requires(Scope.JOBS_READ)
@bp.input(WorkflowListQuery, location="query", arg_name="query")
@bp.output(WorkflowPage)
@bp.doc(summary="List workflows, newest first", responses={400: "Bad cursor"})
def list_all(query: WorkflowListQuery) -> Any:
    statuses = query.status.split(",") if query.status else None
    rows, next_cursor = list_workflows(db(), tenant_id=tenant(), limit=query.limit, cursor=query.cursor,
                                       status=statuses)  # fmt: skip
    return WorkflowPage(items=[WorkflowSummary.of(w) for w in rows], next_cursor=next_cursor)


@bp.get("/<workflow_id>")
@requires(Scope.JOBS_READ)
@bp.output(WorkflowRead)
@bp.doc(summary="Read a workflow: its status, each step's status, job and attempts, progress",
        responses={404: "No such workflow"})  # fmt: skip
def get_one(workflow_id: str) -> Any:
    return WorkflowRead.of_view(workflow_view(db(), parse_workflow_id(workflow_id), tenant_id=tenant()))


@bp.get("/<workflow_id>/events")
@requires(Scope.JOBS_READ)
@bp.input(WorkflowEventQuery, location="query", arg_name="query")
@bp.output(WorkflowEventList)
@bp.doc(summary="The workflow's audit trail, oldest first (each job's own is at /v1/jobs/{id}/events)",
        responses={404: "No such workflow"})  # fmt: skip
def events(workflow_id: str, query: WorkflowEventQuery) -> Any:
    rows = list_workflow_events(db(), parse_workflow_id(workflow_id), tenant_id=tenant(), after=query.after,
                                limit=query.limit)  # fmt: skip
    return WorkflowEventList(items=[WorkflowEventRead.of(e) for e in rows])


@bp.get("/<workflow_id>/stream")
@requires(Scope.JOBS_READ)
@bp.doc(summary="Follow a workflow live (Server-Sent Events)",
        responses={200: STREAM_RESPONSE, 404: "No such workflow"})  # fmt: skip
def stream(workflow_id: str) -> Any:
    workflow_uuid, tenant_id = parse_workflow_id(workflow_id), tenant()
    first = WorkflowRead.of_view(workflow_view(db(), workflow_uuid, tenant_id=tenant_id))  # a 404 before the stream
    return follow("workflow", first,
                  lambda session: WorkflowRead.of_view(workflow_view(session, workflow_uuid, tenant_id=tenant_id)),
                  lambda flow: flow.finished_at is not None)  # fmt: skip


@bp.post("/<workflow_id>/cancel")
@requires(Scope.JOBS_WRITE)
@bp.output(WorkflowRead)
@bp.doc(
    summary="Cancel a workflow",
    description="Every unfinished step is cancelled: waiting steps and jobs not yet running at once, running jobs "
    "at their next progress check. Cancelling twice is harmless.",
    responses={404: "No such workflow", 409: "Already finished"},
)
def cancel(workflow_id: str) -> Any:
    session = db()
    workflow = cancel_workflow(session, parse_workflow_id(workflow_id), tenant_id=tenant(), actor=principal().key_id,
                               now=utcnow())  # fmt: skip
    session.commit()
    return workflow_response(workflow.id, 200)


@bp.post("/<workflow_id>/retry")
@requires(Scope.JOBS_WRITE)
@bp.output(WorkflowRead, status_code=202)
@bp.doc(
    summary="Retry a failed or cancelled workflow",
    description="Only its failed, cancelled and skipped steps run again, with their parents' stored results: a "
    "failed job as one more attempt, a cancelled job as a new job with the same payload, a step that never ran "
    "once its parents have succeeded. Succeeded steps keep their results.",
    responses={404: "No such workflow", 409: "Not failed or cancelled, or still stopping"},
)
def retry(workflow_id: str) -> Any:
    session = db()
    workflow = retry_workflow(session, parse_workflow_id(workflow_id), tenant_id=tenant(), actor=principal().key_id,
                              now=utcnow())  # fmt: skip
    session.commit()
    return workflow_response(workflow.id, 202)
