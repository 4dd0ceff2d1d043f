"""Typed SQLAlchemy models of the job ledger (jobs, job_results, job_events) and of schedules."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from core.ids import uuid7
from core.status import TERMINAL, UNFINISHED_STATUSES, JobStatus
from core.types import UTCDateTime, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")
EventId: TypeEngine[int] = BigInteger().with_variant(
    Integer(), "sqlite"
)  # SQLite only autoincrements INTEGER PRIMARY KEY

STATUS_VALUES = ", ".join(f"'{s.value}'" for s in JobStatus)
TERMINAL_VALUES = ", ".join(f"'{s.value}'" for s in sorted(TERMINAL))
UNFINISHED = f"status NOT IN ({TERMINAL_VALUES})"
# The same rows named by the statuses they may have: the quota's index uses this form so that PostgreSQL cannot
# prove a unique-key lookup (which says UNFINISHED) fits it, and never plans that lookup on it instead of its key's.
ACTIVE = f"status IN ({', '.join(map(repr, UNFINISHED_STATUSES))})"
# A failure group's jobs (core/failures.py): given up on, or waiting to retry.
FAILING_STATUSES = (JobStatus.FAILED.value, JobStatus.RETRYING.value)
FAILING = f"status IN ({', '.join(map(repr, FAILING_STATUSES))})"
# The rows each of the reconciler's scans (and the queue operations') read, one partial index each (migration 0016).
# A row is in such an index only while it has that status, so the claim and the completion of an ordinary job, which
# change its status twice, enter and leave the running one only: an index on (status, column) took a delete and an
# insert at every change on SQLite, and a new entry for every row version on PostgreSQL. A query names the predicate
# as this SQL text, not as a bound status: psycopg prepares a statement run five times, and PostgreSQL's generic plan
# of it cannot prove a partial index's predicate from a parameter.
SCHEDULED = f"status = '{JobStatus.SCHEDULED.value}'"
RETRYING = f"status = '{JobStatus.RETRYING.value}'"
RUNNING = f"status = '{JobStatus.RUNNING.value}'"
WAITING_STATUSES = (JobStatus.SCHEDULED.value, JobStatus.QUEUED.value, JobStatus.RETRYING.value)  # not started yet
WAITING = f"status IN ({', '.join(map(repr, WAITING_STATUSES))})"
EXPIRING = f"expires_at IS NOT NULL AND {WAITING}"
# The jobs that ended without success: rare next to the succeeded ones, and what an operator pages through.
UNSUCCESSFUL_STATUSES = (JobStatus.FAILED.value, JobStatus.CANCELLED.value)
UNSUCCESSFUL = f"status IN ({', '.join(map(repr, UNSUCCESSFUL_STATUSES))})"
# Finished rows: a range on finished_at implies it, so those queries need not say it.
FINISHED_ROWS = "finished_at IS NOT NULL"


def key_index(name: str, scope: str, key: str, *, also: str | None = None) -> Index:
    """A unique index over the rows whose `key` is set (and that match `also`)."""
    where = text(f"{key} IS NOT NULL" + (f" AND {also}" if also else ""))
    return Index(name, scope, key, unique=True, postgresql_where=where, sqlite_where=where)


def where_index(name: str, *columns: str, where: str, unique: bool = False) -> Index:
    """A partial index: over the rows `where` holds for only (on both databases)."""
    return Index(name, *columns, unique=unique, postgresql_where=text(where), sqlite_where=text(where))


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        uuid.UUID: Uuid(),
    }


class Job(Base):
    __tablename__ = "jobs"

    # time-ordered: new jobs go beside the last ones in every index keyed by job id (core/ids.py)
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    tenant_id: Mapped[str] = mapped_column(String(64), default="default")
    type: Mapped[str] = mapped_column(String(100))
    queue: Mapped[str] = mapped_column(String(100))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]]
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_at: Mapped[datetime | None]
    next_attempt_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    published_at: Mapped[datetime | None]  # last successful publish; NULL after a failed one (the reconciler retries)
    # Jobs woken by the message that last published this row (a batch shares messages): the reconciler weighs the
    # broker's message count with it.
    message_jobs: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    worker: Mapped[str | None] = mapped_column(String(255))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))  # body fingerprint behind idempotency_key
    unique_key: Mapped[str | None] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(128))  # the API request that made it: on its log lines
    callback_url: Mapped[str | None] = mapped_column(Text)  # POSTed (signed) when the job finishes: core/webhooks.py
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    # The workflow and step this job runs for (core/workflows), and its item's place in a mapped step's list.
    workflow_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("workflows.id", ondelete="SET NULL"))
    workflow_step: Mapped[str | None] = mapped_column(String(100))
    map_index: Mapped[int | None] = mapped_column(Integer)
    progress_done: Mapped[int | None] = mapped_column(BigInteger)
    progress_total: Mapped[int | None] = mapped_column(BigInteger)
    progress_message: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    error: Mapped[dict[str, Any] | None]
    # The cause of the last failed attempt (core/failures.py) and when it failed: the failure groups.
    error_fingerprint: Mapped[str | None] = mapped_column(String(16))
    failed_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]  # not started by then → cancelled as expired (the reconciler)
    schedule_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("schedules.id", ondelete="SET NULL"))
    schedule_slot: Mapped[datetime | None]  # the slot of schedule_id this job runs for: one job per slot
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint(f"status IN ({STATUS_VALUES})", name="status"),
        CheckConstraint("priority BETWEEN 0 AND 9", name="priority"),
        CheckConstraint("max_attempts >= 1", name="max_attempts"),
        # The reconciler's scans: due scheduled jobs, due retries, expired leases (and a stopped worker's jobs), and
        # waiting jobs past their expiry; each reads its own rows, whatever the size of the backlog and the ledger.
        where_index("ix_jobs_scheduled_run_at", "run_at", where=SCHEDULED),
        where_index("ix_jobs_retrying_next_attempt_at", "next_attempt_at", where=RETRYING),
        where_index("ix_jobs_running_lease_until", "lease_until", where=RUNNING),
        where_index("ix_jobs_expiring", "expires_at", where=EXPIRING),
        # The jobs not started yet, by queue and status: the queued jobs' messages the broker lacks and the rows never
        # published (by publish time), a queue's drain and resume. A running or finished job is not in it. Its last
        # columns let the reconciler weigh a queue's messages from the index alone (migration 0017): a publish
        # rewrites the entry anyway, as it sets published_at.
        where_index("ix_jobs_waiting", "queue", "status", "published_at", "tenant_id", "message_jobs", where=WAITING),
        Index("ix_jobs_tenant_created", "tenant_id", "created_at", "id"),
        # Finished jobs by when they finished: the last minute's throughput and failures (GET /v1/queues) and the
        # retention pruner's expired rows, read as a range instead of the whole history.
        where_index("ix_jobs_finished", "status", "finished_at", where=FINISHED_ROWS),
        # The children of a job, which its deletion (the pruner's) sets free (ON DELETE SET NULL): without it each
        # deleted job read the whole table on PostgreSQL.
        where_index("ix_jobs_parent", "parent_id", where="parent_id IS NOT NULL"),
        # A workflow's jobs by step and item: a fan-in's results in order, a cancellation's unfinished jobs, and the
        # deletion of a workflow (ON DELETE SET NULL).
        where_index("ix_jobs_workflow", "workflow_id", "workflow_step", "map_index", where="workflow_id IS NOT NULL"),
        # A tenant's unfinished jobs, for its quota (core/quotas.py): counted whole by the maintenance tick, and since
        # that count by each submit. Finished rows leave it, so it stays the size of the backlog.
        where_index("ix_jobs_tenant_active", "tenant_id", "created_at", where=ACTIVE),
        # A tenant's failed and cancelled jobs by creation: the job list filtered by those statuses reads them a page
        # at a time, where the tenant's history (ix_jobs_tenant_created) held 14 succeeded jobs for each. A job enters
        # it once, as it ends; a success never does.
        where_index("ix_jobs_tenant_unsuccessful", "tenant_id", "created_at", where=UNSUCCESSFUL),
        # The failure groups (core/failures.py): the failed and retrying jobs by tenant and cause, grouped and counted
        # from the index alone, and a group's newest failure read off its end (failed_at before status: the sample
        # of a 50,000-job group took 50 ms the other way round). Succeeding jobs never enter it.
        where_index("ix_jobs_failures", "tenant_id", "error_fingerprint", "failed_at", "status", where=FAILING),
        # The key indexes hold only the rows that have the key (most jobs have none): a status change writes an
        # entry in every index of the table on PostgreSQL, and NULL keys never enforced anything (migration 0005).
        key_index("uq_jobs_tenant_idempotency_key", "tenant_id", "idempotency_key"),
        key_index("uq_jobs_active_unique_key", "tenant_id", "unique_key", also=UNFINISHED),
        # The database, not the scheduler, guarantees one job per slot: two beats or a clock jump cannot double it.
        key_index("uq_jobs_schedule_slot", "schedule_id", "schedule_slot"),
    )


class JobResult(Base):
    __tablename__ = "job_results"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    data: Mapped[dict[str, Any] | None]
    file_ref: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobEvent(Base):
    """The audit trail: one row per transition. Ordered by id, which is monotonic per database."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


MISFIRE_POLICIES = ("skip", "all", "none")


class Schedule(Base):
    """A periodic job: a cron expression in a time zone or a fixed interval, fired once per slot by beat."""

    __tablename__ = "schedules"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64), default="default")
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    queue: Mapped[str | None] = mapped_column(String(100))
    priority: Mapped[int | None] = mapped_column(Integer)
    max_attempts: Mapped[int | None] = mapped_column(Integer)
    cron: Mapped[str | None] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    interval_seconds: Mapped[int | None] = mapped_column(Integer)
    start_at: Mapped[datetime | None]
    end_at: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    misfire: Mapped[str] = mapped_column(String(8), default="skip")
    misfire_grace_seconds: Mapped[int] = mapped_column(Integer, default=60)
    catchup_limit: Mapped[int] = mapped_column(Integer, default=100)
    expires_after_seconds: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(8), default="api")  # "file": owned by `conveyor schedule sync`
    next_fire_at: Mapped[datetime | None]  # the next slot not yet fired; NULL once past end_at
    last_slot_at: Mapped[datetime | None]
    last_job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid())
    missed_slots: Mapped[int] = mapped_column(BigInteger, default=0)  # slots the misfire policy did not fire
    last_error: Mapped[str | None] = mapped_column(Text)  # why the last tick could not make its job, if it could not
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("(cron IS NULL) <> (interval_seconds IS NULL)", name="one_cadence"),
        CheckConstraint("interval_seconds IS NULL OR interval_seconds >= 1", name="interval_seconds"),
        CheckConstraint(f"misfire IN ({', '.join(repr(p) for p in MISFIRE_POLICIES)})", name="misfire"),
        Index("uq_schedules_tenant_name", "tenant_id", "name", unique=True),
        Index("ix_schedules_due", "enabled", "next_fire_at"),
    )


DATASET_STATUSES = ("pending", "ready", "failed")


class Dataset(Base):
    """A typed table Conveyor owns (`table_name`), filled by ingest jobs; its schema is fixed by the first ingest."""

    __tablename__ = "datasets"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64), default="default")
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending → ready, or failed (no data yet)
    table_name: Mapped[str] = mapped_column(String(63), unique=True)
    columns: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)  # [{name, column, type, nullable, …}]
    schema_inferred: Mapped[bool] = mapped_column(Boolean, default=False)
    row_count: Mapped[int] = mapped_column(BigInteger, default=0)
    reject_count: Mapped[int] = mapped_column(BigInteger, default=0)
    version: Mapped[int] = mapped_column(Integer, default=0)  # successful ingests so far
    source: Mapped[dict[str, Any] | None]  # how it was made: an upload's file, or the job that derived it
    last_job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid())
    error: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint(f"status IN ({', '.join(repr(s) for s in DATASET_STATUSES)})", name="status"),
        Index("ix_datasets_tenant_created", "tenant_id", "created_at"),
        Index("uq_datasets_tenant_name", "tenant_id", "name", unique=True),
    )


class DatasetVersion(Base):
    """One successful ingest (or derivation) of a dataset: what came in and what it left."""

    __tablename__ = "dataset_versions"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(8))  # replace | append
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid())
    rows_loaded: Mapped[int] = mapped_column(BigInteger)
    rows_rejected: Mapped[int] = mapped_column(BigInteger)
    row_count: Mapped[int] = mapped_column(BigInteger)  # the dataset's rows after this version
    source: Mapped[dict[str, Any] | None]
    # The columns this ingest widened: [{column, from, to, line, value}] (core/datasets/typing.py)
    schema_changes: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    # What a derived version read: [{dataset_id, name, version}] (its lineage; an ingest reads a file, in `source`)
    inputs: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("uq_dataset_versions_dataset_version", "dataset_id", "version", unique=True),)


class DatasetReject(Base):
    """A row an ingest refused: where it was, which column, why, and the raw value."""

    __tablename__ = "dataset_rejects"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    line: Mapped[int] = mapped_column(BigInteger)  # the record's line, the header being line 1
    column: Mapped[str | None] = mapped_column(String(200))
    value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_dataset_rejects_dataset_line", "dataset_id", "line"),)


class StoredFile(Base):
    """A file Conveyor keeps under DATA_DIR/files: an upload waiting for (or kept after) its ingest, or an export."""

    __tablename__ = "files"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64), default="default")
    kind: Mapped[str] = mapped_column(String(8))  # upload | export
    dataset_id: Mapped[uuid.UUID | None] = mapped_column(Uuid())  # deleted with its dataset
    path: Mapped[str] = mapped_column(Text)  # relative to DATA_DIR
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An API key of one tenant: its public id, a keyed hash of its secret (never the secret), and its scopes."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # the key's public part, shown in lists and logs
    tenant_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    secret_hash: Mapped[str] = mapped_column(String(64))  # HMAC-SHA256 of the whole token, hex (ADR 0009)
    created_by: Mapped[str | None] = mapped_column(String(64))  # the key id that made it, or "cli"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_api_keys_tenant_created", "tenant_id", "created_at"),)


class AuditEvent(Base):
    """Who changed what outside the job ledger (keys, schedules, datasets): the actor is a key id, or "cli"."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))  # e.g. key.created, schedule.deleted
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_audit_events_tenant_created", "tenant_id", "created_at"),)


class TenantUsage(Base):
    """A tenant's unfinished jobs as the maintenance tick last counted them (core/quotas.py adds the newer ones)."""

    __tablename__ = "tenant_usage"

    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    active_jobs: Mapped[int] = mapped_column(BigInteger)
    # Submits count the jobs created from here on: the count's start, less a margin for transactions that were
    # still open when it ran (their jobs' created_at is earlier than their commit).
    count_since: Mapped[datetime]


WEBHOOK_KINDS = ("endpoint", "callbacks")


class Webhook(Base):
    """Where a tenant's events go: an endpoint (a URL subscribed to event types), or the tenant's `callbacks` row,
    whose secret signs the deliveries to jobs' own callback_url. Secrets are `whsec_` (Standard Webhooks); after a
    rotation the previous one signs too until previous_secret_expires_at."""

    __tablename__ = "webhooks"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default="endpoint")
    url: Mapped[str | None] = mapped_column(Text)  # NULL for the callbacks row: each job names its own
    event_types: Mapped[list[str]] = mapped_column(JSONType)
    job_types: Mapped[list[str] | None] = mapped_column(JSONType)  # None: every type
    description: Mapped[str | None] = mapped_column(String(200))
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None]
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint(f"kind IN ({', '.join(repr(k) for k in WEBHOOK_KINDS)})", name="kind"),
        Index("ix_webhooks_tenant_created", "tenant_id", "created_at"),
        where_index("uq_webhooks_tenant_callbacks", "tenant_id", where="kind = 'callbacks'", unique=True),
    )


class WebhookDelivery(Base):
    """One event for one webhook: its id is the `webhook-id` header, the same on every attempt and redelivery. Its
    status is its current job's (a delivery is a job on the webhooks queue)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # msg_<32 hex>
    tenant_id: Mapped[str] = mapped_column(String(64))
    webhook_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)  # webhook and job event: made once
    payload: Mapped[dict[str, Any]]
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid())  # the job delivering it now (a redelivery makes another)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_webhook_deliveries_webhook_created", "webhook_id", "created_at"),)


class WebhookAttempt(Base):
    """One POST of a delivery: the receiver's status (or the error, e.g. refused by the SSRF guard) and latency."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid())
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    response: Mapped[str | None] = mapped_column(Text)  # the start of the receiver's answer
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "id"),)


class WebhookCursor(Base):
    """How far the dispatcher has read job_events (one row). `gaps` are ids below it not seen yet: on PostgreSQL a
    transaction still open when its neighbours committed; they are looked for again for GAP_SECONDS."""

    __tablename__ = "webhook_cursor"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger)
    gaps: Mapped[list[list[Any]]] = mapped_column(JSONType)  # [[event id, first seen (ISO)], ...]


ALL_TENANTS = "*"  # a pause of every tenant's jobs in a queue (an operator's, from the CLI)


class QueuePause(Base):
    """A paused queue: workers claim none of its jobs of `tenant_id` (or of every tenant, ALL_TENANTS) until it is
    resumed. In the database, so a pause holds across restarts of every process and takes effect at the next claim."""

    __tablename__ = "queue_pauses"

    queue: Mapped[str] = mapped_column(String(100), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str | None] = mapped_column(Text)
    paused_by: Mapped[str | None] = mapped_column(String(255))  # the API key's id, or "cli"
    paused_at: Mapped[datetime] = mapped_column(default=utcnow)


class Heartbeat(Base):
    """A maintenance tick's last run (beat sent it, the maintenance worker ran it): `conveyor doctor` and /readyz read
    whether beat is ticking from here."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)  # the tick: reconcile, schedules, prune
    host: Mapped[str | None] = mapped_column(String(255))
    beat_at: Mapped[datetime] = mapped_column(default=utcnow)


# The workflow tables share this metadata (jobs.workflow_id references one): importing the models imports them.
from core.workflows.models import Workflow as Workflow  # noqa: E402
from core.workflows.models import WorkflowEvent as WorkflowEvent  # noqa: E402
from core.workflows.models import WorkflowStep as WorkflowStep  # noqa: E402
