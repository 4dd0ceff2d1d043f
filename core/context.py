"""What a job handler gets: the `JobContext` interface (the worker provides the implementation)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.settings import Settings


class JobCancelled(Exception):
    """Raised by `progress()`/`check_cancelled()` when the job's cancellation was requested."""


class LeaseLost(Exception):
    """Raised when this attempt no longer owns the job (its lease expired and the job moved on)."""


class JobContext(Protocol):
    job_id: uuid.UUID
    attempt: int
    tenant_id: str  # the job's tenant: the only one whose objects a handler may touch
    logger: logging.Logger

    @property
    def data_dir(self) -> Path:
        """DATA_DIR: where uploads and exports live."""
        ...

    @property
    def settings(self) -> Settings:
        """The worker's settings (e.g. what the SSRF guard allows)."""
        ...

    @property
    def engine(self) -> Engine:
        """For work that needs connections of its own beside the unit of work (e.g. a streaming COPY)."""
        ...

    @property
    def session(self) -> Session:
        """The executor's unit of work: what the handler writes here commits together with the result."""
        ...

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Record progress, renew the lease and raise `JobCancelled` if cancellation was requested."""
        ...

    def cancelled(self) -> bool:
        """True once cancellation was requested (no exception; for handlers that clean up themselves)."""
        ...

    def enqueue(
        self,
        job_type: str,
        payload: dict[str, Any],
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        delay_seconds: float | None = None,
    ) -> uuid.UUID:
        """A child job, made in the same transaction as this attempt's success: it exists only if this attempt
        succeeds (an attempt that fails, is cancelled or is killed leaves none). Validated now: a bad type, payload
        or queue raises here. Returns the child's id (its `parent_id` is this job)."""
        ...
