"""The console's Jobs list (filters, keyset pages, rows kept live over Server-Sent Events) and Job page (payload,
result, progress, every attempt with its error, the audit trail; live until the job finishes; cancel and retry as the
API allows them)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from flask import Response, flash, redirect, render_template, request, url_for
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api.auth import principal
from api.console.pages import console_blueprint
from api.console.session import signed_in
from api.extension import conveyor, db, publish_job
from api.job_stream import follow
from api.jobs import parse_job_id
from api.schemas import JobListQuery
from core.attempts import Attempt, attempts_of
from core.errors import ConveyorError
from core.jobs import cancel_job, retry_job
from core.keys import Scope
from core.models import Job, JobEvent, JobResult
from core.queries import JobFilter, get_job, get_result, list_events, list_jobs
from core.status import JobStatus

bp = console_blueprint("console_jobs", "/console/jobs")
PAGE = 50


class BadFilter(ConveyorError):
    slug, status, title = "validation-error", 422, "Invalid filter"


def list_query() -> JobListQuery:
    """The list's filters from the query string (a form's empty fields mean no filter)."""
    given = {name: value for name, value in request.args.items() if value}
    given.setdefault("limit", str(PAGE))
    for name in ("created_after", "created_before"):  # a form's datetime-local has no zone: the form says UTC
        if name in given and len(given[name]) in (16, 19) and "T" in given[name]:
            given[name] += "+00:00"
    try:
        return JobListQuery.model_validate(given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BadFilter(f"Check the filters: {problems}.") from None


def page_of(session: Session, query: JobListQuery, tenant_id: str) -> tuple[list[Job], str | None]:
    filters = JobFilter(status=query.status.split(",") if query.status else None, type=query.type, queue=query.queue,
                        created_after=query.created_after, created_before=query.created_before)  # fmt: skip
    return list_jobs(session, filters=filters, limit=query.limit, cursor=query.cursor, tenant_id=tenant_id)


@bp.get("")
@signed_in(Scope.JOBS_READ)
def list_page() -> Any:
    query = list_query()
    jobs, next_cursor = page_of(db(), query, principal().tenant_id)
    ext = conveyor()
    filters = {k: v for k, v in request.args.items() if v and k != "cursor"}
    query_string = request.query_string.decode()  # the live rows follow the same page
    return render_template(
        "console/jobs.html", jobs=jobs, next_cursor=next_cursor, query=query, filters=filters,
        statuses=[s.value for s in JobStatus], types=sorted(spec.name for spec in ext.registry),
        queues=ext.settings.queues,
        live_url=url_for("console_jobs.live_rows") + (f"?{query_string}" if query_string else ""),
    )  # fmt: skip


@bp.get("/live")
@signed_in(Scope.JOBS_READ)
def live_rows() -> Response:
    """The list's rows, re-sent whenever one of them (or a newer job on the first page) changes."""
    query, tenant_id = list_query(), principal().tenant_id

    def rows(session: Session) -> str:
        jobs, _ = page_of(session, query, tenant_id)
        return render_template("console/_job_rows.html", jobs=jobs)

    with conveyor().read_sessions() as session:
        first = rows(session)
    return follow("rows", first, rows, lambda _html: False, render=lambda html: html)


@dataclass(frozen=True)
class JobView:
    """Everything the job page shows, read in one session."""

    job: Job
    events: list[JobEvent]
    attempts: list[Attempt]
    result: JobResult | None

    @property
    def finished(self) -> bool:
        return JobStatus(self.job.status).terminal


def job_view(session: Session, job_id: uuid.UUID, tenant_id: str) -> JobView:
    job = get_job(session, job_id, tenant_id=tenant_id)
    events = list_events(session, job_id, tenant_id=tenant_id)
    result = get_result(session, job_id, tenant_id=tenant_id) if job.status == JobStatus.SUCCEEDED.value else None
    return JobView(job, events, attempts_of(events), result)


@bp.get("/<job_id>")
@signed_in(Scope.JOBS_READ)
def job_page(job_id: str) -> Any:
    view = job_view(db(), parse_job_id(job_id), principal().tenant_id)
    return render_template("console/job.html", view=view, job=view.job)


@bp.get("/<job_id>/live")
@signed_in(Scope.JOBS_READ)
def live_job(job_id: str) -> Response:
    """The job's changing part, re-sent on every change until it finishes; then `done` closes the page's stream."""
    job_uuid, tenant_id = parse_job_id(job_id), principal().tenant_id
    first = job_view(db(), job_uuid, tenant_id)  # a 404 before the stream starts

    def read(session: Session) -> JobView:
        return job_view(session, job_uuid, tenant_id)

    def render(view: JobView) -> str:
        return render_template("console/_job_state.html", view=view, job=view.job)

    return follow("job", first, read, lambda view: view.finished, render=render, closing_event="done")


@bp.post("/<job_id>/cancel")
@signed_in(Scope.JOBS_WRITE)
def cancel(job_id: str) -> Any:
    session = db()
    job = cancel_job(session, parse_job_id(job_id), tenant_id=principal().tenant_id, actor=principal().key_id)
    session.commit()
    flash("Cancelled." if job.status == JobStatus.CANCELLED.value else "Cancel requested: it stops at its next check.")
    return redirect(url_for("console_jobs.job_page", job_id=job_id))


@bp.post("/<job_id>/retry")
@signed_in(Scope.JOBS_WRITE)
def retry(job_id: str) -> Any:
    session = db()
    job = retry_job(session, parse_job_id(job_id), tenant_id=principal().tenant_id, actor=principal().key_id)
    session.commit()
    publish_job(job)
    flash(f"Queued again for attempt {job.attempt + 1}.")
    return redirect(url_for("console_jobs.job_page", job_id=job_id))
