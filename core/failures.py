"""Failure groups: a job's failed attempts grouped by cause, as Sentry groups events, so that "what failed last night
and why" is a handful of groups instead of a million rows.

A failed attempt's fingerprint is computed once, when the attempt is recorded (core.jobs.fail_attempt), from the job's
type, the error's type, its message with the numbers, ids and times taken out, and the frame of the job's handler
that raised (`where`, kept by the worker in the error: a path and a function, no line number, so that a deploy which
moves lines keeps the groups). It is stored on the row beside `failed_at`; a partial index over the rows that are
`failed` or `retrying` makes the grouping an index scan of those rows only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, text, tuple_
from sqlalchemy.orm import Session

from core.errors import ConveyorError
from core.models import FAILING, Job
from core.queries import decode_cursor, encode_cursor, page_of_jobs
from core.status import JobStatus

FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
MESSAGE_MAX = 500  # of the normalised message, hashed and shown

# What varies between two failures of the same cause, in the order they are replaced (a uuid holds hex, a time holds
# numbers). Numbers glued to letters (utf8, s3, sha256) are names, not values, and stay.
_VARYING = (
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<id>"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"), "<time>"),
    (re.compile(r"\b(?:0x)?(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"(?<![\w.])\d+(?:\.\d+)*(?!\w)"), "<n>"),  # 3, 30.5, an address 10.0.0.7
)


class FailureGroupNotFound(ConveyorError):
    slug, status, title = "not-found", 404, "Not found"


def normalised(message: str) -> str:
    """The message with its numbers, ids, hex strings and times replaced by placeholders."""
    for pattern, placeholder in _VARYING:
        message = pattern.sub(placeholder, message)
    return message[:MESSAGE_MAX]


def fingerprint(job_type: str, error: dict[str, Any]) -> str:
    """The group of a failed attempt: 16 hex digits of a hash of its job type, error type, normalised message and
    the handler's frame."""
    parts = (job_type, str(error.get("type", "")), normalised(str(error.get("message", ""))), error.get("where") or "")
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def parse_fingerprint(raw: str) -> str:
    if not FINGERPRINT.match(raw):
        raise FailureGroupNotFound(f"No failure group with id {raw!r} (fingerprints are 16 lowercase hex digits).")
    return raw


@dataclass(frozen=True)
class GroupFilter:
    status: str | None = None  # one of FAILING_STATUSES, or both
    type: str | None = None
    queue: str | None = None
    since: datetime | None = None  # the group's jobs that failed at or after this time

    def where(self, tenant_id: str) -> list[Any]:
        # The index's own condition, spelled as it is: SQLite uses a partial index only for a query that repeats it.
        found = [Job.tenant_id == tenant_id, text(FAILING), Job.error_fingerprint.is_not(None)]
        if self.status is not None:
            found.append(Job.status == self.status)
        if self.type is not None:
            found.append(Job.type == self.type)
        if self.queue is not None:
            found.append(Job.queue == self.queue)
        if self.since is not None:
            found.append(Job.failed_at >= self.since)
        return found


@dataclass(frozen=True)
class FailureGroup:
    fingerprint: str
    failed: int
    retrying: int
    first_seen: datetime
    last_seen: datetime
    sample: Job  # the group's most recent failure: its type, error (with traceback) and where

    @property
    def count(self) -> int:
        return self.failed + self.retrying


def group_counts(
    tenant_id: str, matching: GroupFilter
) -> Select[str | None, int, int, datetime | None, datetime | None]:
    failed = func.count().filter(Job.status == JobStatus.FAILED.value)
    retrying = func.count().filter(Job.status == JobStatus.RETRYING.value)
    return (
        select(Job.error_fingerprint, failed, retrying, func.min(Job.failed_at), func.max(Job.failed_at))
        .where(*matching.where(tenant_id))
        .group_by(Job.error_fingerprint)
    )


def list_groups(
    session: Session, *, tenant_id: str, matching: GroupFilter, limit: int, cursor: str | None = None
) -> tuple[list[FailureGroup], str | None]:
    """The tenant's failure groups, the most recent failure first (keyset-paginated on last seen and fingerprint)."""
    query = group_counts(tenant_id, matching)
    last_seen = func.max(Job.failed_at)
    if cursor:
        at, after = decode_cursor(cursor, str)
        query = query.having(tuple_(last_seen, Job.error_fingerprint) < tuple_(at, after))
    rows = session.execute(query.order_by(last_seen.desc(), Job.error_fingerprint.desc()).limit(limit + 1)).all()
    groups = [_group(session, tenant_id, matching, row) for row in rows[:limit]]
    next_cursor = encode_cursor(groups[-1].last_seen, groups[-1].fingerprint) if len(rows) > limit else None
    return groups, next_cursor


def get_group(session: Session, fingerprint: str, *, tenant_id: str, matching: GroupFilter) -> FailureGroup:
    query = group_counts(tenant_id, matching).where(Job.error_fingerprint == parse_fingerprint(fingerprint))
    row = session.execute(query).one_or_none()
    if row is None:
        raise FailureGroupNotFound(
            f"No failure group with id {fingerprint}: none of your failed or retrying jobs has it."
        )
    return _group(session, tenant_id, matching, row)


def _group(session: Session, tenant_id: str, matching: GroupFilter, row: Any) -> FailureGroup:
    fingerprint_, failed, retrying, first_seen, last_seen = row
    sample = session.scalars(
        select(Job)
        .where(*matching.where(tenant_id), Job.error_fingerprint == fingerprint_)
        .order_by(Job.failed_at.desc(), Job.id.desc())
        .limit(1)
    ).one()
    return FailureGroup(fingerprint_, failed, retrying, first_seen, last_seen, sample)


def jobs_of_group(
    session: Session, fingerprint: str, *, tenant_id: str, matching: GroupFilter, limit: int, cursor: str | None
) -> tuple[list[Job], str | None]:
    """The group's jobs, the most recent failure first."""
    query = select(Job).where(*matching.where(tenant_id), Job.error_fingerprint == fingerprint)
    return page_of_jobs(session, query, key=Job.failed_at, limit=limit, cursor=cursor)


def group_has_jobs(session: Session, fingerprint: str, *, tenant_id: str) -> bool:
    found = select(Job.id).where(*GroupFilter().where(tenant_id), Job.error_fingerprint == fingerprint).limit(1)
    return session.scalar(found) is not None


def workflow_jobs_failed(session: Session, fingerprint: str, *, tenant_id: str) -> int:
    """The group's failed jobs that are workflows' steps: a group retry leaves them to their workflow's retry."""
    counted = select(func.count()).where(
        Job.tenant_id == tenant_id,
        Job.status == JobStatus.FAILED.value,
        Job.error_fingerprint == fingerprint,
        Job.workflow_id.is_not(None),
    )
    return session.scalar(counted) or 0
