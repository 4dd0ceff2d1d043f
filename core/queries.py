"""Read-side queries of the ledger: one job, pages of jobs, events, results, queue statistics."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, TextClause, func, select, text, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from core.errors import ConveyorError, JobNotFound, ResultNotReady
from core.models import ACTIVE, UNSUCCESSFUL, UNSUCCESSFUL_STATUSES, WAITING, Job, JobEvent, JobResult
from core.statements.shared import due_at
from core.status import UNFINISHED_STATUSES, JobStatus
from core.types import utcnow

RowId = TypeVar("RowId")


class BadCursor(ConveyorError):
    slug, status, title = "bad-cursor", 400, "Invalid cursor"


def get_job(session: Session, job_id: uuid.UUID, *, tenant_id: str = "default") -> Job:
    job = session.scalars(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id)).one_or_none()
    if job is None:
        raise JobNotFound(f"No job with id {job_id}.")
    return job


@dataclass(frozen=True)
class JobFilter:
    status: list[str] | None = None
    type: str | None = None
    queue: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def encode_cursor(at: datetime, row_id: object) -> str:
    """A keyset cursor over (time, id), newest first: opaque to clients (GET /v1/jobs, a webhook's deliveries)."""
    raw = json.dumps([at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, id_of: Callable[[str], RowId]) -> tuple[datetime, RowId]:
    """The cursor's time and row id (`id_of` parses the id: uuid.UUID for jobs), or BadCursor."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromisoformat(at), id_of(row_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise BadCursor("The cursor is not one this API returned; start again without it.") from None


def page_of_jobs(
    session: Session, query: Select[Any], *, key: InstrumentedAttribute[Any], limit: int, cursor: str | None
) -> tuple[list[Job], str | None]:
    """Newest first, keyset-paginated on (key, id). Returns the page and the next cursor (or None)."""
    if cursor:
        at, job_id = decode_cursor(cursor, uuid.UUID)
        query = query.where(tuple_(key, Job.id) < tuple_(at, job_id))
    rows: list[Job] = list(session.scalars(query.order_by(key.desc(), Job.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(getattr(rows[limit - 1], key.key), rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


def list_jobs(
    session: Session, *, filters: JobFilter, limit: int, cursor: str | None = None, tenant_id: str = "default"
) -> tuple[list[Job], str | None]:
    """Newest first by creation."""
    query = select(Job).where(Job.tenant_id == tenant_id)
    if filters.status:
        query = query.where(Job.status.in_(filters.status), *_statuses_index(filters.status))
    if filters.type:
        query = query.where(Job.type == filters.type)
    if filters.queue:
        query = query.where(Job.queue == filters.queue)
    if filters.created_after:
        query = query.where(Job.created_at >= filters.created_after)
    if filters.created_before:
        query = query.where(Job.created_at < filters.created_before)
    return page_of_jobs(session, query, key=Job.created_at, limit=limit, cursor=cursor)


def has_jobs(session: Session, *, tenant_id: str) -> bool:
    """Whether the tenant has any job at all: one entry of ix_jobs_tenant_created."""
    return session.scalar(select(Job.id).where(Job.tenant_id == tenant_id).limit(1)) is not None


def _statuses_index(statuses: list[str]) -> list[TextClause]:
    """The predicate of the partial index that holds every job of these statuses, by tenant and creation, if one does:
    a page of the unfinished, or of the failed and cancelled, jobs then reads those rows, not the tenant's history."""
    for predicate, held in ((ACTIVE, UNFINISHED_STATUSES), (UNSUCCESSFUL, UNSUCCESSFUL_STATUSES)):
        if set(statuses) <= set(held):
            return [text(predicate)]
    return []


def list_events(session: Session, job_id: uuid.UUID, *, tenant_id: str = "default") -> list[JobEvent]:
    get_job(session, job_id, tenant_id=tenant_id)
    return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))


def get_result(session: Session, job_id: uuid.UUID, *, tenant_id: str = "default") -> JobResult:
    job = get_job(session, job_id, tenant_id=tenant_id)
    result = session.scalars(select(JobResult).where(JobResult.job_id == job_id)).one_or_none()
    if result is None:
        raise ResultNotReady(f"Job {job_id} is {job.status}; a result exists once it has succeeded.")
    return result


@dataclass(frozen=True)
class QueueStats:
    name: str
    counts: dict[str, int]  # unfinished jobs by status
    oldest_queued_age_seconds: float | None
    finished_last_minute: dict[str, int]  # succeeded and failed, by finished_at in the last ACTIVITY_WINDOW

    @property
    def failure_ratio(self) -> float | None:
        """Failed of the jobs finished (succeeded or failed) in the last minute; None when none finished."""
        done = self.finished_last_minute["succeeded"] + self.finished_last_minute["failed"]
        return self.finished_last_minute["failed"] / done if done else None


ACTIVITY_WINDOW = timedelta(minutes=1)


def queue_stats(session: Session, queues: list[str], *, tenant_id: str = "default") -> list[QueueStats]:
    """The tenant's unfinished jobs of each queue by status, its oldest queued job's age, and the last minute's
    finished jobs. Each read is a range of a partial index (ix_jobs_tenant_active, ix_jobs_waiting, ix_jobs_finished):
    its cost follows the backlog and the last minute's throughput, never the finished history (ADR 0016)."""
    counts: dict[str, dict[str, int]] = {q: dict.fromkeys(UNFINISHED_STATUSES, 0) for q in queues}
    rows = session.execute(
        select(Job.queue, Job.status, func.count())
        .where(Job.tenant_id == tenant_id, text(ACTIVE))
        .group_by(Job.queue, Job.status)
    )
    for queue, status, count in rows:
        counts.setdefault(queue, dict.fromkeys(UNFINISHED_STATUSES, 0))[status] = count
    oldest = dict(
        session.execute(
            select(Job.queue, func.min(Job.updated_at))
            .where(Job.tenant_id == tenant_id, text(WAITING), Job.status == JobStatus.QUEUED.value)
            .group_by(Job.queue)
        ).all()
    )
    now = utcnow()
    finished: dict[str, dict[str, int]] = {q: {"succeeded": 0, "failed": 0} for q in counts}
    recent = session.execute(
        select(Job.queue, Job.status, func.count())
        .where(
            Job.status.in_(["succeeded", "failed"]),
            Job.finished_at >= now - ACTIVITY_WINDOW,
            Job.tenant_id == tenant_id,
        )
        .group_by(Job.queue, Job.status)
    )
    for queue, status, count in recent:
        finished.setdefault(queue, {"succeeded": 0, "failed": 0})[status] = count
    stats = []
    for name, by_status in counts.items():
        since = _aware(oldest.get(name))
        age = (now - since).total_seconds() if since else None
        stats.append(QueueStats(name, by_status, age, finished[name]))
    return stats


@dataclass(frozen=True)
class Backlog:
    """Unfinished jobs of one queue and status, across tenants, and when the longest-waiting of them became due."""

    queue: str
    status: str
    jobs: int
    oldest_due: datetime | None


def backlog(session: Session) -> list[Backlog]:
    """Every queue's unfinished jobs by status, for the metrics the maintenance tick sets. Its predicate is the
    partial index's (ix_jobs_tenant_active), so it reads the backlog, never the finished history."""
    due = func.min(due_at())
    rows = session.execute(
        select(Job.queue, Job.status, func.count(), due).where(text(ACTIVE)).group_by(Job.queue, Job.status)
    )
    return [Backlog(queue, status, jobs, _aware(oldest)) for queue, status, jobs, oldest in rows]


def _aware(value: datetime | str | None) -> datetime | None:
    """SQLite's MIN() bypasses the column type: an ISO string, naive."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True)
class MinuteCounts:
    """One queue's finished jobs per minute of the last hour, oldest minute first."""

    succeeded: list[int]
    failed: list[int]


def last_hour_by_minute(session: Session, *, tenant_id: str, now: datetime | None = None) -> dict[str, MinuteCounts]:
    """Per queue, the tenant's succeeded and failed jobs in each of the last 60 minutes (a range of
    ix_jobs_finished), for the console's throughput and failure charts."""
    now = (now or utcnow()).replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = now - timedelta(hours=1)
    if session.get_bind().dialect.name == "postgresql":
        minute: Any = func.date_trunc("minute", Job.finished_at)
    else:  # SQLite keeps naive UTC text: cut it at the minute
        minute = func.strftime("%Y-%m-%d %H:%M:00", Job.finished_at)
    rows = session.execute(
        select(Job.queue, Job.status, minute, func.count())
        .where(Job.status.in_(["succeeded", "failed"]), Job.finished_at >= start, Job.tenant_id == tenant_id)
        .group_by(Job.queue, Job.status, minute)
    )
    found: dict[str, MinuteCounts] = {}
    for queue, status, at, count in rows:
        counts = found.setdefault(queue, MinuteCounts([0] * 60, [0] * 60))
        index = int((_aware(at) - start).total_seconds() // 60)  # type: ignore[operator]
        if 0 <= index < 60:
            getattr(counts, status)[index] += count
    return found
