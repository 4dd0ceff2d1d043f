"""Maintenance tasks ticked by beat: the reconciler, the firing of due schedules, the webhook dispatcher and the
retention pruner."""

from __future__ import annotations

import functools
import logging
import socket
import sys
import time
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from core import metrics
from core.db import checkpoint_wal
from core.firing import fire_due_schedules
from core.models import Heartbeat
from core.planner_stats import refresh_planner_statistics
from core.publish import messages_of, publish_committed
from core.queries import backlog
from core.queue import Message
from core.quotas import refresh_usage
from core.reconcile import reconcile
from core.retention import Retention, prune
from core.status import UNFINISHED_STATUSES, JobStatus
from core.types import utcnow
from core.webhook_dispatch import dispatch_events
from worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)


def run_reconcile(runtime: WorkerRuntime) -> dict[str, Any]:
    """One reconciler tick (core/reconcile.py), SQLite's WAL checkpoint, and every `backlog_interval` the reads of
    the whole backlog: lost messages, the tenants' usage, the planner's statistics and the backlog gauges."""
    settings = runtime.settings
    now = time.monotonic()
    read_backlog = now - runtime.backlog_read_at >= settings.backlog_interval
    if read_backlog:
        runtime.backlog_read_at = now
    with runtime.sessions() as session, session.begin():
        report = reconcile(
            session,
            republish_after=settings.republish_after,
            backoff_cap=settings.retry_backoff_max,
            broker_depth=functools.partial(_broker_depth, runtime) if read_backlog else None,
            registry=runtime.registry,
            jobs_per_message=settings.jobs_per_message,
        )
    failed = _publish(runtime, report.to_publish)
    checkpointed = checkpoint_wal(runtime.engine)
    tenants, analyzed = 0, []
    if read_backlog:
        with runtime.sessions() as session, session.begin():
            tenants = refresh_usage(session)
        with runtime.sessions() as session, session.begin():
            analyzed = refresh_planner_statistics(session)
        set_backlog_gauges(runtime)
    _ticked(runtime, "reconcile")
    counts = {name: value for name, value in vars(report).items() if name != "to_publish"}  # not 5,000 wake-ups
    summary = counts | {"to_publish": len(report.job_ids), "messages": len(report.to_publish),
                        "publish_failed": failed, "analyzed": analyzed, "tenants_counted": tenants,
                        "backlog_read": read_backlog, "wal_pages_checkpointed": checkpointed}  # fmt: skip
    if report.to_publish or report.leases_expired or report.expired or analyzed:
        log.info("reconcile: %s", summary)
    return summary


def run_schedules(runtime: WorkerRuntime) -> dict[str, Any]:
    with runtime.sessions() as session, session.begin():
        report = fire_due_schedules(session, registry=runtime.registry, known_queues=runtime.settings.queues,
                                    active_jobs_limit=runtime.settings.quota_active_jobs)  # fmt: skip
        batch = messages_of(report.jobs)
    failed = _publish(runtime, batch)
    _ticked(runtime, "schedules")
    summary = {"schedules": report.schedules, "jobs": len(batch), "missed": report.missed, "errors": report.errors,
               "publish_failed": failed}  # fmt: skip
    if report.schedules:
        log.info("schedules: %s", summary)
    return summary


def run_webhooks(runtime: WorkerRuntime) -> dict[str, Any]:
    """Turn the job events since the last tick into webhook deliveries (core/webhook_dispatch.py), then publish."""
    with runtime.sessions() as session, session.begin():
        report = dispatch_events(session, registry=runtime.registry, known_queues=runtime.settings.queues)
        batch = messages_of(report.jobs)
    failed = _publish(runtime, batch)
    summary = {"events": report.events, "deliveries": len(batch), "gaps": report.gaps, "publish_failed": failed}
    if batch:
        log.info("webhooks: %s", summary)
    return summary


def run_prune(runtime: WorkerRuntime) -> dict[str, Any]:
    """Delete what is past its retention (core/retention.py), within the run's time budget."""
    settings = runtime.settings
    report = prune(runtime.sessions, Retention.of(settings, runtime.registry), data_dir=settings.data_dir.resolve(),
                   batch=settings.prune_batch, budget_seconds=settings.prune_budget_seconds)  # fmt: skip
    _ticked(runtime, "prune")
    summary = {"jobs": report.jobs, "files": report.files, "workflows": report.workflows, "finished": report.finished}
    if report.files or report.workflows or any(report.jobs.values()):
        log.info("prune: %s", summary)
    return summary


def _ticked(runtime: WorkerRuntime, tick: str) -> None:
    """The tick ran: its gauge, and its heartbeat row (beat is ticking, `conveyor doctor` and /readyz read it)."""
    metrics.TICK.labels(tick).set(time.time())
    try:
        with runtime.sessions() as session, session.begin():
            session.merge(Heartbeat(name=tick, host=socket.gethostname(), beat_at=utcnow()))
    except SQLAlchemyError:
        log.warning("could not record the %s tick's heartbeat", tick, exc_info=True)


def set_backlog_gauges(runtime: WorkerRuntime) -> None:
    """Each queue's unfinished jobs by status and its oldest queued job's age, from the database. Every queue the
    workers consume or a job names gets every status, so a backlog that drained reads 0, not its last value."""
    with runtime.sessions() as session:
        rows = backlog(session)
    now = utcnow()
    queues = set(runtime.settings.queues) | {row.queue for row in rows} | runtime.gauged_queues
    found = {(row.queue, row.status): row for row in rows}
    for queue in queues:
        for status in UNFINISHED_STATUSES:
            row = found.get((queue, status))
            metrics.QUEUE_JOBS.labels(queue, status).set(row.jobs if row else 0)
        queued = found.get((queue, JobStatus.QUEUED.value))
        oldest = queued.oldest_due if queued else None
        metrics.QUEUE_OLDEST.labels(queue).set(max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)
    runtime.gauged_queues = queues


def _broker_depth(runtime: WorkerRuntime, queue: str) -> int:
    try:
        return runtime.publisher.queue_depth(queue)
    except Exception:
        # Unknown: republish nothing this tick (a publish would fail too); rows never published are still handled.
        log.warning("cannot read the depth of queue %s; stale queued rows wait for the next tick", queue, exc_info=True)
        return sys.maxsize


def _publish(runtime: WorkerRuntime, batch: list[Message]) -> int:
    """Publish after commit (core.publish); returns how many failed."""
    return len(publish_committed(runtime.publisher, runtime.sessions, batch))
