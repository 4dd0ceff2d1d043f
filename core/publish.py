"""After the commit that made jobs durable: the messages that wake them, published; what fails waits for the
reconciler.

The one place commit-then-publish happens, for the API (submits, retries, triggers, uploads) and the maintenance
worker (schedules, webhooks, the reconciler) alike, and the one place a job's wake-up is made.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.db import Sessions, make_sessionmaker
from core.jobs import mark_unpublished
from core.models import Job
from core.queue import Message, Publisher, Wakeup, messages
from core.registry import JobSpec, Registry
from core.settings import Settings
from core.status import JobStatus
from core.workflows.advance import Releaser, session_info

log = logging.getLogger(__name__)


def wakeup_of(job: Job, spec: JobSpec | None = None, *, jobs_per_message: int = 1) -> Wakeup:
    """A job's wake-up call. Given its spec, it may share a message with up to `jobs_per_message` jobs of its type,
    queue and priority, unless the type has a soft time limit (Celery applies that to a whole message) or the job has
    had an attempt: a retry's message is its own, so that Flower shows each attempt as the task's `retries`."""
    if spec is None:
        return Wakeup(job.id, job.type, job.queue, job.priority, request_id=job.request_id, attempts=job.attempt)
    per_message = jobs_per_message if spec.soft_time_limit is None and job.attempt == 0 else 1
    return Wakeup(job.id, job.type, job.queue, job.priority, per_message, spec.time_limit, job.request_id, job.attempt)


def messages_of(jobs: Sequence[Job], registry: Registry | None = None, *, jobs_per_message: int = 1) -> list[Message]:
    """The messages that wake the jobs due now (queued), in order. With the registry and `jobs_per_message` > 1,
    jobs of a type, queue and priority share messages of up to that many (`wakeup_of`); without, each has its own.
    Deterministic: a submit records each row's message size from them before the insert, then publishes them."""
    due = [job for job in jobs if job.status == JobStatus.QUEUED]
    if registry is None:
        return [Message((wakeup_of(job),)) for job in due]
    # A type no longer registered (its module removed since the job was made) still gets its message, alone: the
    # worker fails it visibly instead of the job waiting unseen.
    specs = [registry.get(job.type) if job.type in registry else None for job in due]
    wakeups = [wakeup_of(job, spec, jobs_per_message=jobs_per_message) for job, spec in zip(due, specs, strict=True)]
    return messages(wakeups)


def record_message_sizes(
    batch: Sequence[Message], jobs: Sequence[Job], *, published_at: datetime | None = None
) -> None:
    """Each row records the size of the message that wakes it (the reconciler weighs the broker's depth with it)
    and, given `published_at`, when it was published."""
    by_id = {job.id: job for job in jobs}
    for message in batch:
        for job_id in message.job_ids:
            job = by_id[job_id]
            job.message_jobs = len(message.wakeups)
            if published_at is not None:
                job.published_at = published_at


def published_again(
    jobs: Sequence[Job], registry: Registry | None, *, jobs_per_message: int, now: datetime
) -> list[Message]:
    """The messages that wake queued rows (loaded, in the caller's transaction) published once more after their
    first message (a resumed queue, a failed or lost publish, a due retry); given the registry, shared as a batch
    submit's are: a million rows need 20,000 messages, not a million. Each row records its message's size and now."""
    batch = messages_of(jobs, registry, jobs_per_message=jobs_per_message)
    record_message_sizes(batch, jobs, published_at=now)
    return batch


def publish_committed(publisher: Publisher, sessions: Sessions, batch: Sequence[Message]) -> list[uuid.UUID]:
    """Publish messages of jobs whose rows are committed. A failed publish only delays them: their rows are marked
    unpublished (in a transaction of their own) so the reconciler's next tick publishes them. Returns the failed
    job ids."""
    if not batch:
        return []
    failed = publisher.publish(batch)
    if failed:
        try:
            with sessions() as session, session.begin():
                mark_unpublished(session, failed)
        except SQLAlchemyError:
            # Committed jobs are re-published after REPUBLISH_AFTER anyway: the caller still answers that they were
            # accepted (an API client that saw an error would submit them a second time).
            log.warning("could not mark %s unpublished; the reconciler re-publishes them later", failed, exc_info=True)
    return failed


def process_sessions(
    engine: Engine, settings: Settings, registry: Registry, publisher: Publisher
) -> sessionmaker[Session]:
    """The sessions of a process that changes jobs (the API, a worker, the CLI): a workflow's job that one of them
    finishes releases the next steps, whose messages the session publishes once it has committed (ADR 0014)."""
    releaser = Releaser(registry, settings.queues, settings.workflow_map_limit, settings.jobs_per_message)

    def publish(batch: list[Message]) -> None:
        publish_committed(publisher, sessions, batch)

    sessions = make_sessionmaker(engine, info=session_info(releaser, publish))
    return sessions
