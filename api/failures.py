"""/v1/failures: the tenant's failed and retrying jobs grouped by cause (core/failures.py), and a group's bulk retry
(its failed jobs) and cancel (its retrying jobs), each bounded and in chunks (core/queue_ops.py)."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from api.auth import principal, requires, tenant
from api.extension import conveyor, db
from api.failure_schemas import (
    FailureGroupJobs,
    FailureGroupListQuery,
    FailureGroupPage,
    FailureGroupRead,
    GroupActionCreate,
    GroupCancelled,
    GroupRetried,
)
from api.schemas import JobRead
from core.failures import (
    FailureGroupNotFound,
    get_group,
    group_has_jobs,
    jobs_of_group,
    list_groups,
    parse_fingerprint,
    workflow_jobs_failed,
)
from core.keys import Scope
from core.queue_ops import cancel_group, retry_group

bp = APIBlueprint("failures", __name__, url_prefix="/v1/failures", tag="Failures")


@bp.get("")
@requires(Scope.JOBS_READ)
@bp.input(FailureGroupListQuery, location="query", arg_name="query")
@bp.output(FailureGroupPage)
@bp.doc(
    summary="Failure groups: the failed and retrying jobs grouped by cause, the most recent first",
    description="A group's jobs share their job type, error type, message (numbers, ids and times aside) and the "
    "handler's frame that raised.",
    responses={400: "Bad cursor"},
)
def list_all(query: FailureGroupListQuery) -> Any:
    groups, next_cursor = list_groups(db(), tenant_id=tenant(), matching=query.matching(), limit=query.limit,
                                      cursor=query.cursor)  # fmt: skip
    return FailureGroupPage(items=[FailureGroupRead.of(g) for g in groups], next_cursor=next_cursor)


@bp.get("/<fingerprint>")
@requires(Scope.JOBS_READ)
@bp.input(FailureGroupListQuery, location="query", arg_name="query")
@bp.output(FailureGroupJobs)
@bp.doc(summary="One failure group and its jobs, the most recent failure first", responses={404: "No such group"})
def get_one(fingerprint: str, query: FailureGroupListQuery) -> Any:
    session, matching = db(), query.matching()
    group = get_group(session, fingerprint, tenant_id=tenant(), matching=matching)
    jobs, next_cursor = jobs_of_group(session, group.fingerprint, tenant_id=tenant(), matching=matching,
                                      limit=query.limit, cursor=query.cursor)  # fmt: skip
    return FailureGroupJobs(group=FailureGroupRead.of(group), jobs=[JobRead.of(j) for j in jobs],
                            next_cursor=next_cursor)  # fmt: skip


def existing_group(raw: str, tenant_id: str) -> str:
    """The fingerprint of a group the tenant has failed or retrying jobs in, else 404. Read in a session of its own:
    the request's would hold SQLite's write lock while the bulk operation's chunks wait for it."""
    fingerprint = parse_fingerprint(raw)
    with conveyor().read_sessions() as session:
        found = group_has_jobs(session, fingerprint, tenant_id=tenant_id)
    if not found:
        raise FailureGroupNotFound(f"No failure group with id {raw}: none of your failed or retrying jobs has it.")
    return fingerprint


@bp.post("/<fingerprint>/retry")
@requires(Scope.ADMIN)
@bp.input(GroupActionCreate, location="json", arg_name="body")
@bp.output(GroupRetried)
@bp.doc(
    summary="Retry the group's failed jobs",
    description="Up to `limit` of the group's failed jobs (oldest failure first), each as one more attempt, as POST "
    "/v1/jobs/{id}/retry does, in chunks of 500, each its own transaction. Workflows' jobs are left to their "
    "workflow's retry.",
    responses={404: "No such group"},
)
def retry(fingerprint: str, body: GroupActionCreate) -> Any:
    found, ext = existing_group(fingerprint, tenant()), conveyor()
    report = retry_group(ext.sessions, ext.publisher, found, tenant_id=tenant(), actor=principal().key_id,
                         limit=body.limit)  # fmt: skip
    with ext.read_sessions() as session:
        left = workflow_jobs_failed(session, found, tenant_id=tenant())
    return GroupRetried(retried=report.retried, more=report.more, left_to_workflows=left)


@bp.post("/<fingerprint>/cancel")
@requires(Scope.ADMIN)
@bp.input(GroupActionCreate, location="json", arg_name="body")
@bp.output(GroupCancelled)
@bp.doc(
    summary="Cancel the group's retrying jobs",
    description="Up to `limit` of the group's jobs waiting to retry are cancelled (oldest first, in chunks of 500), "
    "each with an event naming the group: a cause that will not go away stops being retried. Failed jobs stay.",
    responses={404: "No such group"},
)
def cancel(fingerprint: str, body: GroupActionCreate) -> Any:
    found = existing_group(fingerprint, tenant())
    report = cancel_group(conveyor().sessions, found, tenant_id=tenant(), actor=principal().key_id, limit=body.limit)
    return GroupCancelled(cancelled=report.cancelled, more=report.more)
