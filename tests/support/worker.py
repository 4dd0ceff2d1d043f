"""A worker's part of a test, in the test's process: a job run to its end through the real executor (no broker,
the test delivers the message itself)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from core.models import Job
from core.queue import Publisher, make_celery
from core.registry import Registry
from core.settings import Settings
from worker.executor import Delivery, execute_message
from worker.runtime import WorkerRuntime


class RunJob(Protocol):
    def __call__(self, job_id: uuid.UUID | str) -> Job: ...


@contextmanager
def job_runner(settings: Settings, registry: Registry, publisher: Publisher | None = None) -> Iterator[RunJob]:
    """`run(job_id)` delivers the job once and returns its row, which records a handler's failure. The jobs a
    workflow's step releases are published to `publisher` (default: the settings' broker)."""
    runtime = WorkerRuntime(settings, registry, make_celery(settings, name="test"))
    if publisher is not None:
        runtime.publisher = publisher  # type: ignore[assignment]

    def run(job_id: uuid.UUID | str) -> Job:
        with runtime.sessions() as session:
            job_type = session.get_one(Job, uuid.UUID(str(job_id))).type
        execute_message(runtime, registry.get(job_type), [str(job_id)], Delivery("test"))  # a failure is in the row
        with runtime.sessions() as session:
            return session.get_one(Job, uuid.UUID(str(job_id)))

    try:
        yield run
    finally:
        runtime.close()
