"""After the commit that made jobs durable: their wake-ups, published; what fails waits for the reconciler.

The one place commit-then-publish happens, for the API (submits, retries, triggers, uploads) and the maintenance
worker (schedules, the reconciler) alike.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.jobs import mark_unpublished
from core.models import Job
from core.queue import Publisher, Wakeup
from core.registry import JobSpec

log = logging.getLogger(__name__)


def wakeup_of(job: Job, spec: JobSpec | None = None, *, jobs_per_message: int = 1) -> Wakeup:
    """A job's wake-up call. Given its spec, it may share a message with up to `jobs_per_message` jobs of its type,
    queue and priority, unless the type has a soft time limit (Celery applies that to a whole message)."""
    if spec is None:
        return Wakeup(job.id, job.type, job.queue, job.priority)
    per_message = jobs_per_message if spec.soft_time_limit is None else 1
    return Wakeup(job.id, job.type, job.queue, job.priority, per_message, spec.time_limit)


def publish_committed(
    publisher: Publisher, sessions: Callable[[], Session], wakeups: Sequence[Wakeup]
) -> list[uuid.UUID]:
    """Publish jobs whose rows are committed. A failed publish only delays them: their rows are marked unpublished
    (in a transaction of their own) so the reconciler's next tick publishes them. Returns the failed job ids."""
    if not wakeups:
        return []
    failed = publisher.publish(list(wakeups))
    if failed:
        try:
            with sessions() as session, session.begin():
                mark_unpublished(session, failed)
        except SQLAlchemyError:
            # Committed jobs are re-published after REPUBLISH_AFTER anyway: the caller still answers that they were
            # accepted (an API client that saw an error would submit them a second time).
            log.warning("could not mark %s unpublished; the reconciler re-publishes them later", failed, exc_info=True)
    return failed
