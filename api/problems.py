"""Every error as RFC 9457 application/problem+json: one processor for HTTP errors, handlers for the rest."""

from __future__ import annotations

import json
import logging
from typing import Any

from apiflask import APIFlask
from apiflask.exceptions import HTTPError
from flask import Response, request
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import BadRequest

from core import logs
from core.errors import ConveyorError

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = "5"

SLUG_BY_STATUS = {
    400: "malformed-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "request-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "too-many-requests",
    500: "internal-error",
    503: "unavailable",
}

HINTS = {
    413: "The request body is larger than CONVEYOR_MAX_REQUEST_BYTES allows.",
    415: "Send the body as JSON with `Content-Type: application/json`.",
    400: "The body is not valid JSON.",
    429: "This API key sent more requests than CONVEYOR_RATE_LIMIT allows; wait Retry-After seconds and retry.",
}


# The OpenAPI description of every error body (RFC 9457), used for APIFlask's generic and validation errors.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "description": "A URN naming the problem, e.g. urn:conveyor:problem:not-found"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What went wrong and what to do next."},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string", "description": "Dotted path, e.g. payload.message"},
                    "location": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}


def problem_type(slug: str) -> str:
    return f"urn:conveyor:problem:{slug}"


def problem_body(
    status: int,
    *,
    slug: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The RFC 9457 document: the body of an error response, and the `error` of a refused batch item."""
    body: dict[str, Any] = {
        "type": problem_type(slug or SLUG_BY_STATUS.get(status, "error")),
        "title": title or SLUG_BY_STATUS.get(status, "error").replace("-", " ").capitalize(),
        "status": status,
        "detail": detail or "",
        "instance": request.path,
    }
    if errors:
        body["errors"] = errors
    return body | (extensions or {})


def conveyor_problem_body(error: ConveyorError) -> dict[str, Any]:
    """The problem document of a core error (a refused batch item)."""
    return problem_body(error.status, slug=error.slug, title=error.title, detail=error.detail, errors=error.errors,
                        extensions=error.extensions)  # fmt: skip


def problem(
    status: int,
    *,
    slug: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> Response:
    body = problem_body(status, slug=slug, title=title, detail=detail, errors=errors, extensions=extensions)
    return Response(json.dumps(body), status=status, headers=headers, mimetype=PROBLEM_MEDIA_TYPE)


def _validation_errors(detail: Any) -> list[dict[str, Any]]:
    """APIFlask's {location: {field.path: [messages]}} → [{field, location, message}]."""
    errors: list[dict[str, Any]] = []
    if isinstance(detail, dict):
        for location, fields in detail.items():
            for field, messages in (fields or {}).items() if isinstance(fields, dict) else []:
                for message in messages if isinstance(messages, list) else [messages]:
                    # "_schema" is APIFlask's name for a rule across fields: call it what it is, the whole body
                    name = "body" if field == "_schema" else field
                    errors.append({"field": name, "location": location, "message": str(message)})
    return errors


# A refused oversized body is read and dropped up to this much, so the client gets to read the 413: closing a socket
# with unread data makes the kernel send a reset, which the client sees as "broken pipe" instead of the answer.
DRAIN_LIMIT_BYTES = 16 << 20
DRAIN_CHUNK = 64 << 10


def drain_request_body() -> None:
    """Discard what is left of the request body (up to DRAIN_LIMIT_BYTES; beyond that, the reset is deserved)."""
    stream = request.environ.get("wsgi.input")
    length = request.content_length
    if stream is None or length is None or length > DRAIN_LIMIT_BYTES:
        return
    remaining = length
    try:
        while remaining > 0:
            chunk = stream.read(min(DRAIN_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
    except OSError:  # the client went away: nothing left to answer
        return


def register_problem_handlers(app: APIFlask) -> None:
    @app.error_processor
    def http_error(error: HTTPError) -> Response:
        status = error.status_code
        if status == 413:
            drain_request_body()
        errors = _validation_errors(error.detail) if status == 422 else []
        detail = "One or more fields are invalid; see errors." if errors else (HINTS.get(status) or error.message)
        return problem(
            status,
            title=error.message,
            detail=detail,
            errors=errors,
            headers={k: str(v) for k, v in dict(error.headers or {}).items()},
        )

    @app.errorhandler(BadRequest)
    def bad_request(error: BadRequest) -> Response:
        return problem(400, title="Bad Request", detail=error.description or HINTS[400])

    @app.errorhandler(ConveyorError)
    def conveyor_error(error: ConveyorError) -> Response:
        return problem(error.status, slug=error.slug, title=error.title, detail=error.detail, errors=error.errors,
                       extensions=error.extensions)  # fmt: skip

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)
    def database_unavailable(error: Exception) -> Response:
        log.warning("database unavailable: %s", error)
        return problem(
            503,
            detail="The database is unavailable; retry shortly.",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )

    @app.errorhandler(DBAPIError)
    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return database_unavailable(error)
        log.exception("unhandled error on %s %s", request.method, request.path)
        request_id = logs.context().get("request_id")
        return problem(500, detail=f"An unexpected error occurred; it has been logged with request id {request_id}: "
                       "quote it when you report this.")  # fmt: skip
