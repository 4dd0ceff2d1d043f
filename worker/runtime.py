"""Per-process worker state: settings, registry, the one engine (created lazily, reset after fork), the publisher."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

from celery import Celery
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import is_sqlite, make_engine
from core.publish import process_sessions
from core.queue import CeleryPublisher
from core.registry import Registry
from core.settings import Settings
from worker.lease import LeaseKeeper
from worker.unit_of_work import JobUnitOfWork


class WorkerRuntime:
    def __init__(self, settings: Settings, registry: Registry, app: Celery) -> None:
        self.settings = settings
        self.registry = registry
        self.publisher = CeleryPublisher(app, lean=settings.celery_lean)
        self.duplicate_deliveries = 0
        self.gauged_queues: set[str] = set()  # queues the backlog gauges have named (worker/maintenance.py)
        self.backlog_read_at = -math.inf  # time.monotonic() of the reconciler's last read of the whole backlog

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.resolved_database_url)

    @cached_property
    def lease_keeper(self) -> LeaseKeeper:
        return LeaseKeeper(interval=self.settings.lease_seconds / 3)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return process_sessions(self.engine, self.settings, self.registry, self.publisher)

    @cached_property
    def job_engine(self) -> Engine:
        """The engine of job deliveries. On PostgreSQL its connections stay in autocommit, where a job's claim and
        completion run as single statements; a handler that uses ctx.session switches its unit to a transaction
        (worker/unit_of_work.py). Switching every connection for every job instead cost a tenth of a short job's
        CPU."""
        if is_sqlite(self.engine):
            return self.engine
        return make_engine(self.settings.resolved_database_url, isolation_level="AUTOCOMMIT", pool_size=2)

    @contextmanager
    def job_unit(self) -> Iterator[JobUnitOfWork]:
        """A delivery's unit of work on one pooled connection (claim, handler, completion): one checkout, so one
        pre-ping round trip instead of one per transaction."""
        with self.job_engine.connect() as connection:
            unit = JobUnitOfWork(connection, self.sessions)
            try:
                yield unit
            finally:
                unit.close()

    def after_fork(self) -> None:
        """In a prefork child: drop the parent's pooled connections without closing them under the parent."""
        for engine in self._engines():
            engine.dispose(close=False)
        self.__dict__.pop("lease_keeper", None)  # its thread, if any, stayed in the parent

    def close(self) -> None:
        """Close the pooled connections (tests; a worker process's end closes them anyway)."""
        for engine in self._engines():
            engine.dispose()
        self.__dict__.pop("engine", None)
        self.__dict__.pop("job_engine", None)

    def _engines(self) -> list[Engine]:
        """The engines made so far, each once (on SQLite the job engine is the engine)."""
        made = [self.__dict__[name] for name in ("engine", "job_engine") if name in self.__dict__]
        return [engine for index, engine in enumerate(made) if engine not in made[:index]]
