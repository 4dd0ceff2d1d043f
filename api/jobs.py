"""/v1/jobs: submit, list, read (with ETag), events, result, cancel, retry."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from apiflask import APIBlueprint
from flask import Response, request
from sqlalchemy.orm import Session

from api.auth import principal, requires, tenant
from api.extension import conveyor, db, publish, publish_job
from api.request_log import request_id
from api.schemas import (
    EventList,
    EventRead,
    JobCreate,
    JobListQuery,
    JobPage,
    JobRead,
    JobSubmitted,
    ReadTokenQuery,
    ReadTokenRead,
    ResultRead,
    SubmitQuery,
)
from core.db import single_statement
from core.errors import ConveyorError, JobNotFound
from core.jobs import cancel_job, retry_job
from core.keys import Scope
from core.models import Job
from core.outbound import Guard
from core.queries import JobFilter, get_job, get_result, list_events, list_jobs
from core.read_tokens import ReadGrant, issue_read_token
from core.submit import JobRequest, Submitted, one_statement, request_fingerprint, submit_jobs
from core.types import utcnow
from core.webhooks import callbacks_webhook, check_callback_url

bp = APIBlueprint("jobs", __name__, url_prefix="/v1/jobs", tag="Jobs")
log = logging.getLogger(__name__)

IDEMPOTENCY_KEY_MAX = 255


class BadIdempotencyKey(ConveyorError):
    slug, status, title = "bad-idempotency-key", 400, "Invalid Idempotency-Key header"


def parse_job_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise JobNotFound(f"No job with id {raw!r} (job ids are UUIDs).") from None


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise BadIdempotencyKey(f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} printable characters.")
    return key


def job_response(job: Job, status: int, *, read_token: ReadTokenRead | None = None) -> Response:
    """The job as JSON, with its Location. pydantic-core serialises it directly: apiflask's output path (a dump,
    then json.dumps) and url_for's route building took a sixth of a POST's CPU in a profile."""
    read = JobRead.of(job)
    body = (read if read_token is None else JobSubmitted(**dict(read), read_token=read_token)).model_dump_json()
    location = f"{request.script_root}{bp.url_prefix}/{job.id}"
    return Response(body, status=status, mimetype="application/json", headers={"Location": location})


def job_request(body: JobCreate, *, now: datetime, idempotency_key: str | None) -> JobRequest:
    """The API body as core's request: delay_seconds becomes run_at; the fingerprint guards the key. A callback_url
    must pass the SSRF guard (422), and the tenant's `callbacks` webhook, whose secret signs it, exists from now."""
    if body.callback_url is not None:
        ext = conveyor()
        check_callback_url(body.callback_url, Guard.of(ext.settings))
        with ext.sessions() as session, session.begin():  # its own transaction: the submit may be a group's
            callbacks_webhook(session, tenant())
    run_at = body.run_at
    if body.delay_seconds is not None:
        run_at = now + timedelta(seconds=body.delay_seconds)
    fingerprint = (
        request_fingerprint(body.model_dump(mode="json", exclude={"idempotency_key"})) if idempotency_key else None
    )
    return JobRequest(
        type=body.type,
        payload=body.payload,
        priority=body.priority,
        queue=body.queue,
        run_at=run_at,
        max_attempts=body.max_attempts,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        unique_key=body.unique_key,
        tenant_id=tenant(),
        actor=principal().key_id,
        request_id=request_id(),
        callback_url=body.callback_url,
    )


@bp.post("")
@requires(Scope.JOBS_WRITE)
@bp.input(JobCreate, location="json", arg_name="body")
@bp.input(SubmitQuery, location="query", arg_name="query")
@bp.output(JobSubmitted, status_code=202, description="Accepted; poll the Location.")
@bp.doc(
    summary="Submit a job",
    responses={
        200: "Nothing new was made: the Idempotency-Key names an earlier identical request, or an unfinished job "
        "holds the unique_key; the body is that job",
        415: "Not JSON",
    },
)
def create(body: JobCreate, query: SubmitQuery) -> Any:
    request_ = job_request(body, now=utcnow(), idempotency_key=idempotency_key())
    # Concurrent POSTs share a transaction: the app's GroupCommit runs `submit_group` below for them (api/app.py).
    submitted = conveyor().submit_groups.submit(request_)
    if submitted.error is not None:
        raise submitted.error
    job = submitted.job
    assert job is not None  # noqa: S101 - an outcome has a job or an error
    return job_response(
        job, 202 if submitted.created else 200, read_token=read_token_of(job) if query.read_token else None
    )


def submit_group(requests: Sequence[JobRequest]) -> list[Submitted]:
    """POST /v1/jobs requests that arrived together (core/group_commit.py), run in the first one's request and
    session: one transaction, and their messages shared as a batch's are (ADR 0006)."""
    session = db()
    outcomes = submit_and_publish(session, list(requests), now=utcnow())
    session.expunge_all()  # the jobs are answered by the other requests' threads
    return outcomes


def submit_and_publish(session: Session, requests: list[JobRequest], *, now: datetime) -> list[Submitted]:
    """Insert the jobs (their rows record the sizes of the messages they will share), commit, then publish. Plain
    jobs on PostgreSQL are one statement in autocommit: one round trip instead of BEGIN, INSERT and COMMIT."""
    ext = conveyor()
    shared = ext.settings.jobs_per_message
    alone = one_statement(session, ext.registry, requests)
    with single_statement(session) if alone else contextlib.nullcontext():
        submission = submit_jobs(session, registry=ext.registry, known_queues=ext.settings.queues, requests=requests,
                                 now=now, jobs_per_message=shared,
                                 active_jobs_limit=ext.settings.quota_active_jobs,
                                 usage_cache=ext.usage_cache)  # fmt: skip
        session.commit()
    publish(submission.messages)
    return submission.outcomes


@bp.get("")
@requires(Scope.JOBS_READ)
@bp.input(JobListQuery, location="query", arg_name="query")
@bp.output(JobPage)
@bp.doc(summary="List jobs, newest first", responses={400: "Bad cursor"})
def list_all(query: JobListQuery) -> Any:
    filters = JobFilter(
        status=query.status.split(",") if query.status else None,
        type=query.type,
        queue=query.queue,
        created_after=query.created_after,
        created_before=query.created_before,
    )
    jobs, next_cursor = list_jobs(db(), filters=filters, limit=query.limit, cursor=query.cursor, tenant_id=tenant())
    return JobPage(items=[JobRead.of(j) for j in jobs], next_cursor=next_cursor)


@bp.get("/<job_id>")
@requires(Scope.JOBS_READ)
@bp.input(ReadTokenQuery, location="query", arg_name="_access")
@bp.output(JobRead)
@bp.doc(summary="Read a job (send If-None-Match to poll cheaply)", responses={304: "Not modified", 404: "No such job"})
def get_one(job_id: str, _access: ReadTokenQuery) -> Any:
    job = JobRead.of(get_job(db(), parse_job_id(job_id), tenant_id=tenant()))
    body = job.model_dump_json()
    etag = hashlib.blake2b(body.encode(), digest_size=16).hexdigest()
    if request.if_none_match.contains(etag):
        return Response(status=304, headers={"ETag": f'"{etag}"'})
    return Response(body, mimetype="application/json", headers={"ETag": f'"{etag}"'})


@bp.post("/<job_id>/read-token")
@requires(Scope.JOBS_READ)
@bp.output(ReadTokenRead, status_code=201)
@bp.doc(
    summary="A short-lived token that reads this one job, for a browser's EventSource",
    description="The token opens GET /v1/jobs/{id} and its /stream as `?access_token=`, for "
    "CONVEYOR_READ_TOKEN_SECONDS.",
    responses={404: "No such job"},
)
def read_token(job_id: str) -> Any:
    return read_token_of(get_job(db(), parse_job_id(job_id), tenant_id=tenant())), 201


def read_token_of(job: Job) -> ReadTokenRead:
    """A token that reads this one job for CONVEYOR_READ_TOKEN_SECONDS, issued by the caller's key."""
    ext = conveyor()
    token = issue_read_token(ext.authenticator.server_secret, ReadGrant(job.tenant_id, job.id, principal().key_id))
    expires_at = utcnow() + timedelta(seconds=ext.settings.read_token_seconds)
    stream_url = f"{request.script_root}{bp.url_prefix}/{job.id}/stream?access_token={token}"
    return ReadTokenRead(token=token, job_id=job.id, expires_at=expires_at, stream_url=stream_url)


@bp.get("/<job_id>/events")
@requires(Scope.JOBS_READ)
@bp.output(EventList)
@bp.doc(summary="The job's audit trail, oldest first", responses={404: "No such job"})
def events(job_id: str) -> Any:
    return EventList(items=[EventRead.of(e) for e in list_events(db(), parse_job_id(job_id), tenant_id=tenant())])


@bp.get("/<job_id>/result")
@requires(Scope.JOBS_READ)
@bp.output(ResultRead)
@bp.doc(summary="The result of a succeeded job", responses={404: "No such job", 409: "Not succeeded (yet)"})
def result(job_id: str) -> Any:
    return ResultRead.of(get_result(db(), parse_job_id(job_id), tenant_id=tenant()))


@bp.post("/<job_id>/cancel")
@requires(Scope.JOBS_WRITE)
@bp.output(JobRead)
@bp.doc(
    summary="Cancel a job",
    description="A job not yet running is cancelled at once; a running job stops at its next progress check.",
    responses={404: "No such job", 409: "Already finished"},
)
def cancel(job_id: str) -> Any:
    session = db()
    job = cancel_job(session, parse_job_id(job_id), tenant_id=tenant(), actor=principal().key_id)
    session.commit()
    return JobRead.of(job)


@bp.post("/<job_id>/retry")
@requires(Scope.JOBS_WRITE)
@bp.output(JobRead, status_code=202)
@bp.doc(summary="Retry a failed job as one more attempt", responses={404: "No such job", 409: "Not failed"})
def retry(job_id: str) -> Any:
    session = db()
    job = retry_job(session, parse_job_id(job_id), tenant_id=tenant(), actor=principal().key_id)
    session.commit()
    publish_job(job)
    return job_response(job, 202)
