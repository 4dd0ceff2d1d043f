"""Per-tenant quotas: unfinished jobs, schedules and stored dataset bytes, each checked where it grows.

A tenant's unfinished jobs are not counted whole on every submit (that is the size of its backlog, a million rows
in an incident): the maintenance tick counts them into `tenant_usage`, and a submit adds the unfinished jobs created
since that count began, which the partial index `ix_jobs_tenant_active` answers at the cost of a few seconds of
submits. The sum never undercounts a committed job; it overcounts the jobs that finished since the tick, so a tenant
at its limit is refused a tick early rather than let past it. Concurrent submits of one tenant each see the other's
jobs only once committed, so together they may pass the limit by what they submit at the same instant.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, String, delete, func, insert, literal, literal_column, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnClause

from core.errors import ConveyorError
from core.models import ACTIVE, Job, Schedule, StoredFile, TenantUsage
from core.types import UTCDateTime, utcnow

# A submit's transaction whose jobs the tick could not yet see (still open when the count ran) is counted by the
# submits instead, as long as it committed within this long of its jobs' created_at.
OPEN_TRANSACTION_MARGIN = timedelta(seconds=5)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CACHE_LIMIT = 10_000  # tenants a process's UsageCache holds; past it, it starts over

QuotaName = Literal["active_jobs", "schedules", "dataset_bytes"]


class QuotaExceeded(ConveyorError):
    slug, status, title = "quota-exceeded", 429, "Quota exceeded"

    def __init__(self, quota: QuotaName, *, used: int, limit: int, requested: int, detail: str) -> None:
        super().__init__(detail, extensions={"quota": quota, "used": used, "limit": limit, "requested": requested})


class StorageQuotaExceeded(QuotaExceeded):
    """An upload that would take the tenant's stored bytes past its quota: 413, as for a body over a size limit."""

    status = 413


def active_jobs(session: Session, tenant_id: str) -> int:
    """The tenant's unfinished jobs: the tick's count plus the unfinished jobs created since it began."""
    return int(session.execute(active_jobs_query(tenant_id)).scalar_one())


# The statements, each answered by ix_jobs_tenant_active (tests/core/test_query_plans.py checks it).
def active_jobs_query(tenant_id: str) -> Select[int]:
    usage = select(TenantUsage.active_jobs).where(TenantUsage.tenant_id == tenant_id).scalar_subquery()
    since = select(TenantUsage.count_since).where(TenantUsage.tenant_id == tenant_id).scalar_subquery()
    newer = (
        select(func.count())
        .select_from(Job)
        .where(
            Job.tenant_id == tenant_id,
            text(ACTIVE),
            Job.created_at >= func.coalesce(since, literal(EPOCH, UTCDateTime())),
        )
        .scalar_subquery()
    )
    return select(func.coalesce(usage, 0) + newer)


def active_jobs_by_tenant(dialect: str) -> Select[Any, int]:
    # SQLite, without statistics, would rather probe a status index and sort; the partial index is sorted already.
    jobs = text("jobs INDEXED BY ix_jobs_tenant_active") if dialect == "sqlite" else Job.__table__
    tenant_id: ColumnClause[str] = literal_column("tenant_id", String())
    return select(tenant_id, func.count()).select_from(jobs).where(text(ACTIVE)).group_by(tenant_id)


def schedules(session: Session, tenant_id: str) -> int:
    return int(session.execute(select(func.count()).where(Schedule.tenant_id == tenant_id)).scalar_one())


def dataset_bytes(session: Session, tenant_id: str) -> int:
    """Bytes of the files the tenant keeps: uploads (kept with their dataset) and exports."""
    total = select(func.coalesce(func.sum(StoredFile.size), 0)).where(StoredFile.tenant_id == tenant_id)
    return int(session.execute(total).scalar_one())


class UsageCache:
    """A process's recent counts of its tenants' unfinished jobs, so that a submit far from its quota costs no
    round trip: a count younger than `seconds`, less what this process submitted since, is trusted while more than
    a tenth of the quota is left; nearer the limit every submit counts afresh. The other processes' submits within
    those seconds are what this may miss: a tenant would need a tenth of its quota in that time to pass it."""

    def __init__(self, seconds: float = 1.0) -> None:
        self.seconds = seconds
        self._counts: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def used(self, tenant_id: str) -> int | None:
        with self._lock:
            counted = self._counts.get(tenant_id)
        if counted is None or time.monotonic() - counted[0] > self.seconds:
            return None
        return counted[1]

    def store(self, tenant_id: str, used: int) -> None:
        with self._lock:
            if len(self._counts) >= CACHE_LIMIT:
                self._counts.clear()
            self._counts[tenant_id] = (time.monotonic(), used)

    def add(self, tenant_id: str, jobs: int) -> None:
        with self._lock:
            counted = self._counts.get(tenant_id)
            if counted is not None:
                self._counts[tenant_id] = (counted[0], counted[1] + jobs)


@dataclass
class JobRoom:
    """How many more jobs each tenant of one submit may make: its usage is read on its first job (or taken from the
    cache while far from the limit) and read again when the cached room runs low."""

    session: Session
    limit: int
    cache: UsageCache | None = None
    _left: dict[str, int] = field(default_factory=dict)
    _taken: dict[str, int] = field(default_factory=dict)  # by this submit, not yet in any count
    _exact: set[str] = field(default_factory=set)

    def take(self, tenant_id: str) -> QuotaExceeded | None:
        """Count one job against the tenant's quota, or say why it does not fit."""
        if not self.limit:
            return None
        if tenant_id not in self._left:
            cached = self._cached_room(tenant_id)
            self._left[tenant_id] = self._counted_room(tenant_id) if cached is None else cached
        elif tenant_id not in self._exact and self._left[tenant_id] <= self._far:  # the cached room ran low
            self._left[tenant_id] = self._counted_room(tenant_id)
        if self._left[tenant_id] <= 0:
            used = self.limit - self._left[tenant_id]
            return QuotaExceeded(
                "active_jobs", used=used, limit=self.limit, requested=1,
                detail=f"Tenant {tenant_id!r} has {used} unfinished jobs, its quota is {self.limit} "
                f"(CONVEYOR_QUOTA_ACTIVE_JOBS): wait for some to finish, or cancel some, and submit again.",
            )  # fmt: skip
        self._left[tenant_id] -= 1
        self._taken[tenant_id] = self._taken.get(tenant_id, 0) + 1
        if self.cache is not None:
            self.cache.add(tenant_id, 1)
        return None

    @property
    def _far(self) -> int:
        return self.limit // 10

    def _cached_room(self, tenant_id: str) -> int | None:
        """The room the cache knows of, if it is recent and far from the limit."""
        cached = self.cache.used(tenant_id) if self.cache is not None else None
        if cached is None or self.limit - cached <= self._far:
            return None
        return self.limit - cached

    def _counted_room(self, tenant_id: str) -> int:
        """The room the database knows of, less the jobs this submit took (not inserted yet)."""
        used = active_jobs(self.session, tenant_id) + self._taken.get(tenant_id, 0)
        self._exact.add(tenant_id)
        if self.cache is not None:
            self.cache.store(tenant_id, used)
        return self.limit - used


def check_schedules(session: Session, tenant_id: str, limit: int) -> None:
    if not limit:
        return
    used = schedules(session, tenant_id)
    if used + 1 > limit:
        raise QuotaExceeded(
            "schedules", used=used, limit=limit, requested=1,
            detail=f"Tenant {tenant_id!r} has {used} schedules, its quota is {limit} (CONVEYOR_QUOTA_SCHEDULES): "
            f"delete one first.",
        )  # fmt: skip


def check_dataset_bytes(session: Session, tenant_id: str, adding: int, limit: int) -> None:
    """Refuse (413) a file of `adding` bytes that would take the tenant's stored bytes past its quota."""
    if not limit:
        return
    used = dataset_bytes(session, tenant_id)
    if used + adding > limit:
        raise StorageQuotaExceeded(
            "dataset_bytes", used=used, limit=limit, requested=adding,
            detail=f"Tenant {tenant_id!r} stores {used} bytes of dataset files; {adding} more would pass its quota "
            f"of {limit} (CONVEYOR_QUOTA_DATASET_BYTES): delete a dataset first.",
        )  # fmt: skip


def refresh_usage(session: Session, *, now: datetime | None = None) -> int:
    """Count every tenant's unfinished jobs into tenant_usage (in the caller's transaction); returns the tenants.
    A tenant left with none keeps a row of 0, so its submits still count from this tick."""
    since = (now or utcnow()) - OPEN_TRANSACTION_MARGIN
    counts: dict[str, int] = {
        tenant: count for tenant, count in session.execute(active_jobs_by_tenant(session.get_bind().dialect.name))
    }
    known = set(session.scalars(select(TenantUsage.tenant_id)))
    session.execute(delete(TenantUsage))
    rows = [{"tenant_id": t, "active_jobs": counts.get(t, 0), "count_since": since} for t in known | set(counts)]
    if rows:
        session.execute(insert(TenantUsage), rows)
    return len(rows)
