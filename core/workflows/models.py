"""Typed models of workflows: the workflow, its steps (the DAG as submitted, with counters), and its events."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from core.models import Base, EventId, JSONType, key_index, where_index
from core.types import utcnow


class WorkflowStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a step failed (fail_fast: at once; continue: once every branch has finished)
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    WAITING = "waiting"  # parents unfinished: no job yet
    RUNNING = "running"  # released: its job (or a mapped step's jobs) exists
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a job failed, or the step could not be released (a reference, a payload)
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # a parent did not succeed (failure policy `continue`)

    @property
    def finished(self) -> bool:
        return self not in (StepStatus.WAITING, StepStatus.RUNNING)


FAILURE_POLICIES = ("fail_fast", "continue")
# all_succeeded: released when every parent succeeded; all_done: when every parent finished (a batch's on_complete)
RELEASE_WHEN = ("all_succeeded", "all_done")


def _values(values: Any) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Workflow(Base):
    __tablename__ = "workflows"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=WorkflowStatus.RUNNING.value)
    failure_policy: Mapped[str] = mapped_column(String(16), default="fail_fast")
    failed_step: Mapped[str | None] = mapped_column(String(100))  # the first step that failed
    error: Mapped[dict[str, Any] | None]  # why it failed or was cancelled
    steps_total: Mapped[int] = mapped_column(Integer)
    retries: Mapped[int] = mapped_column(Integer, default=0)  # POST …/retry so far
    # Some of its jobs could not be cancelled at once (another transaction held their rows): the maintenance tick
    # finishes the cancellation (core/workflows/advance.py sweep_cancellations).
    sweep_pending: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(64))  # the API key that submitted it
    request_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]  # every step finished

    __table_args__ = (
        CheckConstraint(f"status IN ({_values(WorkflowStatus)})", name="status"),
        CheckConstraint(f"failure_policy IN ({_values(FAILURE_POLICIES)})", name="failure_policy"),
        Index("ix_workflows_tenant_created", "tenant_id", "created_at", "id"),
        key_index("uq_workflows_tenant_idempotency_key", "tenant_id", "idempotency_key"),
        where_index("ix_workflows_sweep", "id", where="sweep_pending"),
        # The unfinished ones, whose jobs the pruner keeps; and the finished ones by status and age, which it deletes.
        where_index("ix_workflows_unfinished", "id", where="finished_at IS NULL"),
        Index("ix_workflows_status_finished", "status", "finished_at"),
    )


class WorkflowStep(Base):
    """A step as submitted (its job's type, payload with `$ref`s, map, parents) and where it stands."""

    __tablename__ = "workflow_steps"

    workflow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # in the submitted order
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]]
    queue: Mapped[str | None] = mapped_column(String(100))
    priority: Mapped[int | None] = mapped_column(Integer)
    max_attempts: Mapped[int | None] = mapped_column(Integer)
    map_over: Mapped[Any | None] = mapped_column(JSONType)  # a list, or a {"$ref": …} to one: one job per item
    depends_on: Mapped[list[str]] = mapped_column(JSONType)
    release_when: Mapped[str] = mapped_column(String(16), default="all_succeeded")
    parents_pending: Mapped[int] = mapped_column(Integer)  # parents still to finish (as `release_when` counts them)
    status: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[uuid.UUID | None]  # an unmapped step's job (the latest, after a retry)
    jobs_total: Mapped[int] = mapped_column(Integer, default=0)
    jobs_succeeded: Mapped[int] = mapped_column(Integer, default=0)
    jobs_failed: Mapped[int] = mapped_column(Integer, default=0)
    jobs_cancelled: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[dict[str, Any] | None]  # why it could not be released, or its first failed job's error
    released_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint(f"status IN ({_values(StepStatus)})", name="status"),
        CheckConstraint(f"release_when IN ({_values(RELEASE_WHEN)})", name="release_when"),
    )

    @property
    def jobs_unfinished(self) -> int:
        return self.jobs_total - self.jobs_succeeded - self.jobs_failed - self.jobs_cancelled


class WorkflowEvent(Base):
    """The workflow's audit trail: submitted, step released / skipped / finished, failed, cancelled, retried."""

    __tablename__ = "workflow_events"

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    workflow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    step: Mapped[str | None] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_workflow_events_workflow", "workflow_id", "id"),)
