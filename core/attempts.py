"""A job's attempts, read off its audit trail: when each started and ended, on which worker, how it ended, and the
error it raised (the console's job page)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.models import JobEvent

# The events that end an attempt, and what the attempt came to.
ENDINGS = {"succeeded", "retrying", "failed", "cancelled", "lease_expired"}


@dataclass(frozen=True)
class Attempt:
    number: int
    worker: str | None
    started_at: datetime
    ended_at: datetime | None  # None: still running (or its end was not recorded yet)
    outcome: str | None  # succeeded, retrying, failed, cancelled, lease_expired
    error: dict[str, Any] | None

    @property
    def seconds(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()


def attempts_of(events: Sequence[JobEvent]) -> list[Attempt]:
    """One Attempt per `running` event, ended by the first ending event of the same attempt after it. An expired
    lease is followed by the retry or failure it caused: the lease's expiry is the outcome, the error is the later
    event's."""
    found: list[Attempt] = []
    for index, event in enumerate(events):
        if event.kind != "running":
            continue
        later = [e for e in events[index + 1 :] if e.attempt == event.attempt]
        end = next((e for e in later if e.kind in ENDINGS), None)
        errors = [e.detail["error"] for e in later if e.detail and isinstance(e.detail.get("error"), dict)]
        found.append(
            Attempt(
                number=event.attempt,
                worker=event.worker,
                started_at=event.created_at,
                ended_at=None if end is None else end.created_at,
                outcome=None if end is None else end.kind,
                error=errors[0] if errors else None,
            )
        )
    return found
