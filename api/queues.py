"""/v1/queues: each queue's state for the caller's tenant, and an admin's operations on the tenant's jobs in it
(pause, resume, drain); /v1/jobs:retry, the bulk retry of failed jobs. The operations are core/queue_ops.py's."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from api.auth import principal, requires, tenant
from api.extension import conveyor, db
from api.schemas import (
    QueueDrainCreate,
    QueueDrained,
    QueueList,
    QueuePauseCreate,
    QueuePauseRead,
    QueueRead,
    RetryFailedCreate,
    RetryFailedRead,
)
from core.keys import Scope
from core.models import ALL_TENANTS, QueuePause
from core.queries import QueueStats, queue_stats
from core.queue_ops import FailedFilter, check_queue, drain_queue, pause_queue, pauses, resume_queue, retry_failed

bp = APIBlueprint("queues", __name__, url_prefix="/v1", tag="Queues")


def queue_read(stats: QueueStats, pause: QueuePause | None) -> QueueRead:
    return QueueRead(
        name=stats.name,
        paused=None if pause is None else QueuePauseRead(
            scope="all" if pause.tenant_id == ALL_TENANTS else "tenant", reason=pause.reason,
            paused_by=pause.paused_by, paused_at=pause.paused_at,
        ),
        counts=stats.counts,
        depth=stats.counts.get("queued", 0),
        oldest_queued_age_seconds=stats.oldest_queued_age_seconds,
        succeeded_last_minute=stats.finished_last_minute["succeeded"],
        failed_last_minute=stats.finished_last_minute["failed"],
        failure_ratio=stats.failure_ratio,
    )  # fmt: skip


def queues_read() -> list[QueueRead]:
    session = db()
    held = pauses(session, tenant())
    return [
        queue_read(s, held.get(s.name)) for s in queue_stats(session, conveyor().settings.queues, tenant_id=tenant())
    ]


def one_queue(name: str) -> QueueRead:
    [found] = [q for q in queues_read() if q.name == name]
    return found


@bp.get("/queues")
@requires(Scope.JOBS_READ)
@bp.output(QueueList)
@bp.doc(summary="Each queue: paused or not, depth by status, oldest queued age, the last minute's throughput")
def list_all() -> Any:
    return QueueList(items=queues_read())


@bp.post("/queues/<queue>/pause")
@requires(Scope.ADMIN)
@bp.input(QueuePauseCreate, location="json", arg_name="body")
@bp.output(QueueRead)
@bp.doc(
    summary="Pause a queue for this tenant",
    description="Workers claim none of the tenant's jobs in the queue from the next claim on; jobs keep arriving and "
    "wait `queued`. Running jobs finish. The pause lives in the database: it holds across restarts until resumed.",
    responses={404: "No such queue"},
)
def pause(queue: str, body: QueuePauseCreate) -> Any:
    check_queue(queue, conveyor().settings.queues)
    session = db()
    pause_queue(session, queue, tenant_id=tenant(), actor=principal().key_id, reason=body.reason)
    session.commit()
    return one_queue(queue)


@bp.post("/queues/<queue>/resume")
@requires(Scope.ADMIN)
@bp.output(QueueRead)
@bp.doc(
    summary="Resume a queue this tenant paused",
    description="Its waiting jobs are published again, oldest first, before the answer. A pause of every tenant's "
    "jobs (an operator's `conveyor queues pause`) stays, and holds them: `paused.scope` is then `all`.",
    responses={404: "No such queue"},
)
def resume(queue: str) -> Any:
    ext = conveyor()
    check_queue(queue, ext.settings.queues)
    resume_queue(ext.sessions, ext.publisher, queue, tenant_id=tenant(), registry=ext.registry,
                 jobs_per_message=ext.settings.jobs_per_message)  # fmt: skip
    return one_queue(queue)


@bp.post("/queues/<queue>/drain")
@requires(Scope.ADMIN)
@bp.input(QueueDrainCreate, location="json", arg_name="body")
@bp.output(QueueDrained)
@bp.doc(
    summary="Cancel this tenant's pending jobs in a queue",
    description="Queued, scheduled and retrying jobs made before the call are cancelled, each with an event that "
    "records the reason; running jobs finish. In chunks of 500, each its own transaction.",
    responses={404: "No such queue"},
)
def drain(queue: str, body: QueueDrainCreate) -> Any:
    ext = conveyor()
    check_queue(queue, ext.settings.queues)
    cancelled = drain_queue(ext.sessions, queue, tenant_id=tenant(), actor=principal().key_id, reason=body.reason)
    return QueueDrained(cancelled=cancelled)


@bp.post("/jobs:retry")
@requires(Scope.ADMIN)
@bp.input(RetryFailedCreate, location="json", arg_name="body")
@bp.output(RetryFailedRead)
@bp.doc(
    summary="Retry this tenant's failed jobs matching a filter",
    description="Up to `limit` failed jobs (oldest failure first) matching every given field, each as one more "
    "attempt, as POST /v1/jobs/{id}/retry does; `more` says whether matching ones are left.",
)
def retry_matching(body: RetryFailedCreate) -> Any:
    ext = conveyor()
    matching = FailedFilter(tenant(), type=body.type, queue=body.queue, error_type=body.error_type,
                            failed_after=body.failed_after, failed_before=body.failed_before)  # fmt: skip
    report = retry_failed(ext.sessions, ext.publisher, matching, limit=body.limit, actor=principal().key_id)
    return RetryFailedRead(retried=report.retried, more=report.more)
