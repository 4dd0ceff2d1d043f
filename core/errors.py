"""Domain errors raised by core; the API maps each to one problem type and status."""

from __future__ import annotations

from typing import Any


class ConveyorError(Exception):
    """Base of the errors a caller can act on. `slug` names the problem type, `status` the HTTP status."""

    slug = "error"
    status = 400
    title = "Bad request"

    def __init__(
        self, detail: str, *, errors: list[dict[str, Any]] | None = None, extensions: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.extensions = extensions or {}  # RFC 9457 extension members: more of the problem, as fields


class JobNotFound(ConveyorError):
    slug, status, title = "not-found", 404, "Not found"


class InvalidTransition(ConveyorError):
    slug, status, title = "invalid-transition", 409, "Conflict with the job's status"


class ResultNotReady(ConveyorError):
    slug, status, title = "result-not-ready", 409, "The job has no result"


class UnknownType(ConveyorError):
    slug, status, title = "unknown-job-type", 422, "Unknown job type"


class UnknownQueue(ConveyorError):
    slug, status, title = "unknown-queue", 422, "Unknown queue"


class PayloadInvalid(ConveyorError):
    slug, status, title = "validation-error", 422, "Request validation failed"


class IdempotencyMismatch(ConveyorError):
    slug, status, title = "idempotency-key-reused", 422, "Idempotency-Key reused with a different request"
