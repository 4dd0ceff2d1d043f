"""Pydantic models of /v1/failures: failure groups, their queries, and the answers of a group's retry and cancel."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from api.schemas import QUEUE_PATTERN, JobRead, Strict
from core.failures import FailureGroup, GroupFilter, normalised
from core.queue_ops import RETRY_LIMIT_MAX

FailingStatus = Literal["failed", "retrying"]


class FailureGroupRead(BaseModel):
    fingerprint: str = Field(description="The group's id: 16 hex digits, the same for every failure of this cause.")
    job_type: str
    error_type: str = Field(description="The exception's type, e.g. `TimeoutError`.")
    message: str = Field(description="The error's message with numbers, ids and times replaced by <n>, <id>, …")
    where: str | None = Field(description="The handler's frame that raised, `path:function`.")
    count: int = Field(description="Failed and retrying jobs in the group (with the query's filters).")
    failed: int = Field(description="Jobs given up on: POST …/retry runs them again.")
    retrying: int = Field(description="Jobs waiting for their next attempt: POST …/cancel stops them.")
    first_seen: datetime = Field(description="The oldest failure still in the group.")
    last_seen: datetime = Field(description="The most recent failure.")
    sample: JobRead = Field(description="The most recent failure's job, with its error and traceback.")

    @classmethod
    def of(cls, group: FailureGroup) -> FailureGroupRead:
        error: dict[str, Any] = group.sample.error or {}
        return cls(
            fingerprint=group.fingerprint,
            job_type=group.sample.type,
            error_type=str(error.get("type", "")),
            message=normalised(str(error.get("message", ""))),
            where=error.get("where"),
            count=group.count,
            failed=group.failed,
            retrying=group.retrying,
            first_seen=group.first_seen,
            last_seen=group.last_seen,
            sample=JobRead.of(group.sample),
        )


class FailureGroupPage(BaseModel):
    items: list[FailureGroupRead]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class FailureGroupQuery(Strict):
    status: FailingStatus | None = Field(default=None, description="Only the failed, or only the retrying, jobs.")
    type: str | None = Field(default=None, max_length=100, description="Only this job type's failures.")
    queue: str | None = Field(default=None, pattern=QUEUE_PATTERN)
    since: AwareDatetime | None = Field(default=None, description="Only failures at or after this time.")

    def matching(self) -> GroupFilter:
        return GroupFilter(status=self.status, type=self.type, queue=self.queue, since=self.since)


class FailureGroupListQuery(FailureGroupQuery):
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=500)


class FailureGroupJobs(BaseModel):
    group: FailureGroupRead
    jobs: list[JobRead] = Field(description="The group's jobs, the most recent failure first.")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page of jobs; null on the last page.")


class GroupActionCreate(Strict):
    limit: int = Field(default=1000, ge=1, le=RETRY_LIMIT_MAX, description="At most this many jobs, oldest first.")


class GroupRetried(BaseModel):
    retried: int = Field(description="Failed jobs of the group queued again, each as one more attempt.")
    more: bool = Field(description="Failed jobs of the group are left (the limit was reached): call again.")
    left_to_workflows: int = Field(
        description="The group's failed jobs that are workflows' steps, left out: retry their workflows "
        "(POST /v1/workflows/{id}/retry), which rerun the skipped steps too."
    )


class GroupCancelled(BaseModel):
    cancelled: int = Field(description="Retrying jobs of the group cancelled: they will not run again.")
    more: bool = Field(description="Retrying jobs of the group are left (the limit was reached): call again.")
