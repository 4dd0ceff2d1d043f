"""Job statuses, stored by value; the transitions between them live in `core.jobs.TRANSITIONS`."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    SCHEDULED = "scheduled"  # run_at is in the future
    QUEUED = "queued"  # published (or about to be), waiting for a worker
    RUNNING = "running"  # claimed by a worker holding a lease
    RETRYING = "retrying"  # failed an attempt, waiting for next_attempt_at
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # terminal: attempts exhausted or not retryable (the dead-letter set)
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
