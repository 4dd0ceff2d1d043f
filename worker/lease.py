"""The lease heartbeat of a worker process."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

log = logging.getLogger(__name__)


class Leased(Protocol):
    """What the keeper needs of a running job (worker.context.WorkerJobContext is one): a Protocol, so that this
    module needs nothing of the context's, whose runtime holds the keeper."""

    job_id: uuid.UUID

    def renew(self) -> None: ...

    def lease_lost(self) -> bool: ...


class LeaseKeeper:
    """The lease heartbeat of one worker process: one thread renews the lease of the job the process runs, every
    `interval`, so a job that never calls progress() is not run twice. The lease then only expires when the process
    is gone (or killed by its time limit). One thread per process, not per job: starting a thread cost a tenth of a
    short job's delivery."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._condition = threading.Condition()
        self._job: Leased | None = None
        self._due = 0.0
        self._thread: threading.Thread | None = None
        self._idle = False  # the thread waits without a deadline: only then must a new job wake it

    @contextmanager
    def keeping(self, ctx: Leased) -> Iterator[None]:
        with self._condition:
            self._job, self._due = ctx, time.monotonic() + self.interval
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self._thread.start()
            elif self._idle:
                # Otherwise the thread wakes by itself at an earlier job's due time, before this one's: waking it
                # for every job (a context switch and a GIL hand-off) was a twentieth of a short job's CPU.
                self._condition.notify()
        try:
            yield
        finally:
            with self._condition:
                self._job = None

    def _run(self) -> None:
        while True:
            ctx = self._next_due()
            try:
                ctx.renew()
            except Exception:
                # A database blip must not kill the heartbeat: the next beat tries again well within the lease.
                log.warning("lease renewal of %s failed", ctx.job_id, exc_info=True)
            if ctx.lease_lost():
                with self._condition:
                    if self._job is ctx:
                        self._job = None  # another attempt owns the job now: stop renewing for this one

    def _next_due(self) -> Leased:
        with self._condition:
            while True:
                ctx = self._job
                delay = None if ctx is None else self._due - time.monotonic()
                if ctx is not None and delay is not None and delay <= 0:
                    self._due = time.monotonic() + self.interval
                    return ctx
                self._idle = delay is None
                self._condition.wait(delay)
