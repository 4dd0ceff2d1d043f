"""Rows in a given state, inserted directly (for tests that start from the middle of a job's life)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from core.models import Job
from core.status import JobStatus
from core.types import utcnow


def queued_job_row(now: datetime | None = None) -> dict[str, object]:
    """A `queued` job's columns, for Core inserts of many rows at once."""
    now = now or utcnow()
    return {"id": uuid.uuid4(), "tenant_id": "default", "type": "echo", "queue": "default", "priority": 5,
            "status": JobStatus.QUEUED.value, "payload": {"message": "x"}, "attempt": 0, "max_attempts": 3,
            "cancel_requested": False, "created_at": now, "updated_at": now, "published_at": now,
            "message_jobs": 1}  # fmt: skip


def insert_job(
    session: Session,
    status: JobStatus,
    *,
    attempt: int = 1,
    max_attempts: int = 3,
    now: datetime | None = None,
    lease_until: datetime | None = None,
    type: str = "echo",
) -> Job:
    now = now or utcnow()
    job = Job(
        id=uuid.uuid4(),
        type=type,
        queue="default",
        priority=0,
        status=status.value,
        payload={"message": "x"},
        attempt=0 if status in (JobStatus.QUEUED, JobStatus.SCHEDULED) else attempt,
        max_attempts=max_attempts,
        run_at=now,
        next_attempt_at=now,
        lease_until=lease_until or (now + timedelta(days=3650)),
        published_at=now,
        worker="test@host:1" if status is JobStatus.RUNNING else None,
        cancel_requested=False,
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    session.commit()
    return job
