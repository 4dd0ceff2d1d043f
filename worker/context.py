"""The worker's JobContext: progress that renews the lease, cancellation checks, and the lease heartbeat."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.context import JobCancelled, LeaseLost
from core.jobs import ClaimedJob, renew_lease
from worker.runtime import WorkerRuntime

PROGRESS_MIN_INTERVAL = 0.2  # seconds between progress writes; a final (done == total) write always goes through


class WorkerJobContext:
    def __init__(self, runtime: WorkerRuntime, claimed: ClaimedJob, session: Session, worker: str) -> None:
        self.runtime = runtime
        self.job_id = claimed.id
        self.attempt = claimed.attempt
        self.worker = worker
        self.logger = logging.getLogger(f"conveyor.job.{claimed.type}")
        self._session = session
        self._cancel_requested = threading.Event()
        self._lease_lost = threading.Event()
        self._last_progress = 0.0

    @property
    def data_dir(self) -> Path:
        return self.runtime.settings.data_dir.resolve()

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    @property
    def session(self) -> Session:
        return self._session

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_MIN_INTERVAL or (total is not None and done >= total):
            self._last_progress = now
            self.renew(progress=(done, total, message))
        self.check()

    def cancelled(self) -> bool:
        return self._cancel_requested.is_set()

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


class Heartbeat:
    """Renews the lease while the handler runs, so a job that never calls progress() is not run twice.
    The lease then only expires when the process is gone (or killed by its time limit)."""

    def __init__(self, ctx: WorkerJobContext, interval: float) -> None:
        self.ctx = ctx
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{ctx.job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.ctx.renew()
            except Exception:
                # A database blip must not kill the heartbeat: the next beat tries again well within the lease.
                logging.getLogger(__name__).warning("lease renewal of %s failed", self.ctx.job_id, exc_info=True)
            if self.ctx._lease_lost.is_set():
                return
