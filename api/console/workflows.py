"""The console's Workflows: the tenant's workflows newest first, and a workflow's page with each step's status,
jobs and error, kept live until the workflow finishes, with cancel and retry as the API allows them."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from sqlalchemy.orm import Session

from api.auth import principal
from api.console.pages import console_blueprint
from api.console.session import signed_in
from api.extension import db
from api.job_stream import follow
from api.workflow_schemas import WorkflowRead, WorkflowSummary
from api.workflows import parse_workflow_id
from core.keys import Scope
from core.types import utcnow
from core.workflows.control import cancel_workflow, retry_workflow
from core.workflows.queries import list_workflows, workflow_view

bp = console_blueprint("console_workflows", "/console/workflows")
PAGE = 50


@bp.get("")
@signed_in(Scope.JOBS_READ)
def list_page() -> Any:
    rows, next_cursor = list_workflows(db(), tenant_id=principal().tenant_id, limit=PAGE,
                                       cursor=request.args.get("cursor") or None)  # fmt: skip
    return render_template("console/workflows.html", workflows=[WorkflowSummary.of(w) for w in rows],
                           next_cursor=next_cursor)  # fmt: skip


def read(session: Session, workflow_id: uuid.UUID) -> WorkflowRead:
    return WorkflowRead.of_view(workflow_view(session, workflow_id, tenant_id=principal().tenant_id))


@bp.get("/<workflow_id>")
@signed_in(Scope.JOBS_READ)
def workflow_page(workflow_id: str) -> Any:
    return render_template("console/workflow.html", flow=read(db(), parse_workflow_id(workflow_id)))


@bp.get("/<workflow_id>/live")
@signed_in(Scope.JOBS_READ)
def live_workflow(workflow_id: str) -> Response:
    """The steps, re-sent on every change until the workflow finishes; then `done` closes the page's stream."""
    workflow_uuid = parse_workflow_id(workflow_id)
    first = read(db(), workflow_uuid)  # a 404 before the stream starts

    def render(flow: WorkflowRead) -> str:
        return render_template("console/_workflow_state.html", flow=flow)

    return follow("workflow", first, lambda session: read(session, workflow_uuid),
                  lambda flow: flow.finished_at is not None, render=render, closing_event="done")  # fmt: skip


@bp.post("/<workflow_id>/cancel")
@signed_in(Scope.JOBS_WRITE)
def cancel(workflow_id: str) -> Any:
    session = db()
    cancel_workflow(session, parse_workflow_id(workflow_id), tenant_id=principal().tenant_id,
                    actor=principal().key_id, now=utcnow())  # fmt: skip
    session.commit()
    flash("Cancelled: its unfinished steps stop (a running job at its next progress check).")
    return redirect(url_for("console_workflows.workflow_page", workflow_id=workflow_id))


@bp.post("/<workflow_id>/retry")
@signed_in(Scope.JOBS_WRITE)
def retry(workflow_id: str) -> Any:
    session = db()
    retry_workflow(session, parse_workflow_id(workflow_id), tenant_id=principal().tenant_id,
                   actor=principal().key_id, now=utcnow())  # fmt: skip
    session.commit()
    flash("Retrying its failed, cancelled and skipped steps.")
    return redirect(url_for("console_workflows.workflow_page", workflow_id=workflow_id))
