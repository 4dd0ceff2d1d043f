"""The worker's JobContext: progress that renews the lease, and cancellation checks."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.context import JobCancelled, LeaseLost
from core.ids import uuid7
from core.jobs import ClaimedJob, renew_lease
from core.settings import Settings
from core.submit import JobRequest, validated_request
from core.types import utcnow
from worker.runtime import WorkerRuntime
from worker.unit_of_work import JobUnitOfWork

PROGRESS_MIN_INTERVAL = 0.2  # seconds between progress writes; a final (done == total) write always goes through


class WorkerJobContext:
    def __init__(self, runtime: WorkerRuntime, claimed: ClaimedJob, unit: JobUnitOfWork, worker: str) -> None:
        self.runtime = runtime
        self.job_id = claimed.id
        self.attempt = claimed.attempt
        self.tenant_id = claimed.tenant_id
        self.worker = worker
        self.logger = logging.getLogger(f"conveyor.job.{claimed.type}")
        self._unit = unit
        self._cancel_requested = threading.Event()
        self._lease_lost = threading.Event()
        self._last_progress = 0.0
        self.request_id = claimed.request_id
        self.children: list[JobRequest] = []  # ctx.enqueue's, made with the success (worker/executor.py)

    @property
    def data_dir(self) -> Path:
        return self.runtime.settings.data_dir.resolve()

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    @property
    def session(self) -> Session:
        return self._unit.transaction()

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_MIN_INTERVAL or (total is not None and done >= total):
            self._last_progress = now
            self.renew(progress=(done, total, message))
        self.check()

    def cancelled(self) -> bool:
        return self._cancel_requested.is_set()

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
        now = utcnow()
        run_at = now + timedelta(seconds=delay_seconds) if delay_seconds else None
        request = JobRequest(type=job_type, payload=payload, queue=queue, priority=priority,
                             max_attempts=max_attempts, run_at=run_at, tenant_id=self.tenant_id,
                             request_id=self.request_id, parent_id=self.job_id, job_id=uuid7())  # fmt: skip
        validated_request(self.runtime.registry, self.runtime.settings.queues, request)  # raises what a submit would
        self.children.append(request)
        assert request.job_id is not None  # noqa: S101 - given above
        return request.job_id

    def lease_lost(self) -> bool:
        return self._lease_lost.is_set()

    def check(self) -> None:
        if self._lease_lost.is_set():
            raise LeaseLost(f"job {self.job_id} attempt {self.attempt} lost its lease")
        if self._cancel_requested.is_set():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def renew(self, progress: tuple[int, int | None, str | None] | None = None) -> None:
        """One short transaction of its own, so progress is visible at once and the lease never waits on the
        handler's unit of work."""
        with self.runtime.sessions() as session, session.begin():
            cancel = renew_lease(
                session,
                job_id=self.job_id,
                attempt=self.attempt,
                lease_seconds=self.runtime.settings.lease_seconds,
                progress=progress,
            )
        if cancel is None:
            self._lease_lost.set()
        elif cancel:
            self._cancel_requested.set()
