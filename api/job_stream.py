"""/v1/jobs/{id}/stream: a job's status as Server-Sent Events, one event per change, until it finishes; `follow`
serves a workflow's stream too."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from apiflask import APIBlueprint
from flask import Response, stream_with_context
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api.auth import requires, tenant
from api.extension import close_db, conveyor, db
from api.jobs import parse_job_id
from api.schemas import JobRead, ReadTokenQuery
from core.errors import ConveyorError
from core.keys import Scope
from core.queries import get_job

bp = APIBlueprint("job_stream", __name__, url_prefix="/v1/jobs", tag="Live updates")

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
MAX_STREAM_SECONDS = 600.0  # then the stream ends; EventSource clients reconnect on their own

STREAM_RESPONSE: Any = {  # an OpenAPI response object, which apiflask's annotation of `responses` does not cover
    "description": "`event: job` with the job as JSON (the same body as GET /v1/jobs/{id}) whenever it changes; "
    "the stream ends after a finished status (succeeded, failed, cancelled).",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


Read = TypeVar("Read")


def sse(event: str, data: str) -> str:
    """One event; each line of `data` its own `data:` field (a client joins them with newlines again)."""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {event}\n{lines}\n"


def as_json(read: BaseModel) -> str:
    return read.model_dump_json()


@bp.get("/<job_id>/stream")
@requires(Scope.JOBS_READ)
@bp.input(ReadTokenQuery, location="query", arg_name="_access")
@bp.doc(summary="Follow a job live (Server-Sent Events)", responses={200: STREAM_RESPONSE, 404: "No such job"})
def stream(job_id: str, _access: ReadTokenQuery) -> Any:
    job_uuid = parse_job_id(job_id)
    tenant_id = tenant()
    first = JobRead.of(get_job(db(), job_uuid, tenant_id=tenant_id))  # a 404 is answered before the stream starts
    return follow("job", first, lambda session: JobRead.of(get_job(session, job_uuid, tenant_id=tenant_id)),
                  lambda job: job.status.terminal)  # fmt: skip


def follow(
    event: str,
    first: Read,
    read: Callable[[Session], Read],
    finished: Callable[[Read], bool],
    *,
    render: Callable[[Read], str] = as_json,  # type: ignore[assignment]
    closing_event: str | None = None,
) -> Response:
    """`first`, then `read` again every POLL_SECONDS, as `event` events whenever its rendering (JSON by default)
    changes, until `finished` says so (or MAX_STREAM_SECONDS pass: EventSource clients reconnect), then
    `closing_event` if given (the console's pages close their stream on it). The request's connection is given back
    first: each read takes one from the pool for its moment only."""
    close_db()
    sessions = conveyor().read_sessions

    def events() -> Iterator[str]:
        current, sent, started = first, "", time.monotonic()
        last_write = started
        while True:
            body = render(current)
            if body != sent:
                yield sse(event, body)
                sent, last_write = body, time.monotonic()
            elif time.monotonic() - last_write > KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                last_write = time.monotonic()
            if finished(current):
                if closing_event is not None:
                    yield sse(closing_event, "")
                return
            if time.monotonic() - started > MAX_STREAM_SECONDS:
                return
            time.sleep(POLL_SECONDS)
            try:
                with sessions() as session:
                    current = read(session)
            except (ConveyorError, SQLAlchemyError) as exc:
                yield sse("error", f'{{"detail": "stream interrupted: {type(exc).__name__}; reconnect to resume"}}')
                return

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(stream_with_context(events()), mimetype="text/event-stream", headers=headers)
