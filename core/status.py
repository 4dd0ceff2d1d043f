"""Job statuses, stored by value, and the one table of the transitions between them.

`core.jobs.move` refuses a change of a loaded row the table lacks; the set-based statements of the hot path
(core/statements) select their row by a source the table allows (`sources_of`).
"""

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
UNFINISHED_STATUSES = [s.value for s in JobStatus if s not in TERMINAL]  # in declaration order


S = JobStatus
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.SCHEDULED: frozenset({S.QUEUED, S.CANCELLED}),
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED}),
    S.RUNNING: frozenset({S.SUCCEEDED, S.RETRYING, S.FAILED, S.CANCELLED}),
    S.RETRYING: frozenset({S.QUEUED, S.CANCELLED}),
    S.FAILED: frozenset({S.QUEUED}),  # manual retry
    S.SUCCEEDED: frozenset(),
    S.CANCELLED: frozenset(),
}


def sources_of(target: JobStatus) -> list[str]:
    """Statuses allowed to move to `target`: the WHERE clause of every conditional update."""
    return [s.value for s, targets in TRANSITIONS.items() if target in targets]
