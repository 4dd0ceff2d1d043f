"""Prometheus metrics: every series Conveyor exports, defined once, and how a process renders them.

Counters of job transitions are counted where the ledger makes the transition, and only once its transaction has
committed (`count` queues them on the session; the commit hook below adds them): a rolled-back transition is never
counted, so the counts equal the ledger's. Gauges read from the database (depth, oldest job) are set by the
maintenance worker's tick (worker/maintenance.py).

Several processes (gunicorn's workers, Celery's pool children) share one metrics directory when
PROMETHEUS_MULTIPROC_DIR is set (`conveyor up` and compose set it): each process writes its own files, a scrape sums
them, and a replaced child's counts stay in its file, so nothing is lost or counted twice. No gauge is "live" (summed
over living processes only), so a dead process's files need no cleanup.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event
from sqlalchemy.orm import Session

JOB = ("type", "queue")
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

SUBMITTED = Counter("conveyor_jobs_submitted", "Jobs created (API, batches, schedules, webhook deliveries).", JOB)
STARTED = Counter("conveyor_jobs_started", "Attempts a worker claimed.", JOB)
SUCCEEDED = Counter("conveyor_jobs_succeeded", "Jobs that succeeded.", JOB)
FAILED = Counter("conveyor_jobs_failed", "Jobs that ended failed (attempts exhausted, or not retryable).", JOB)
RETRIED = Counter("conveyor_jobs_retried", "Failed attempts that will run again after a backoff.", JOB)
CANCELLED = Counter("conveyor_jobs_cancelled", "Jobs that ended cancelled (by a client, or expired).", JOB)
LEASE_EXPIRED = Counter("conveyor_jobs_lease_expired", "Attempts whose lease ran out (a dead or hung worker).", JOB)
RUN_SECONDS = Histogram("conveyor_job_run_seconds", "Time an attempt's handler ran.", ("type",), buckets=SECONDS)
QUEUE_WAIT = Histogram(
    "conveyor_job_queue_wait_seconds", "Time from due to claimed.", ("type",), buckets=SECONDS
)  # fmt: skip
PRUNED = Counter("conveyor_jobs_pruned", "Finished jobs deleted by the retention pruner (with events, result).",
                 ("status",))  # fmt: skip
FILES_PRUNED = Counter("conveyor_files_pruned", "Export files deleted past CONVEYOR_RETENTION_EXPORTS_DAYS.")
SCHEDULE_MISSED = Counter("conveyor_schedule_missed_slots", "Schedule slots not fired (misfire policy or quota).")

# From the database, by the maintenance tick: the value its last tick set.
QUEUE_JOBS = Gauge("conveyor_queue_jobs", "Unfinished jobs by queue and status.", ("queue", "status"),
                   multiprocess_mode="mostrecent")  # fmt: skip
QUEUE_OLDEST = Gauge("conveyor_queue_oldest_age_seconds", "Age of the longest-waiting queued job (0 if none).",
                     ("queue",), multiprocess_mode="mostrecent")  # fmt: skip
TICK = Gauge("conveyor_maintenance_tick_timestamp_seconds", "When a maintenance tick last ran (beat is ticking).",
             ("task",), multiprocess_mode="mostrecent")  # fmt: skip
HEARTBEAT = Gauge("conveyor_worker_heartbeat_timestamp_seconds", "A worker's last heartbeat to the broker.",
                  ("worker",), multiprocess_mode="mostrecent")  # fmt: skip

API_REQUESTS = Counter("conveyor_api_requests", "API requests answered.", ("route", "method", "status"))
API_SECONDS = Histogram("conveyor_api_request_seconds", "API request latency.", ("route", "method"),
                        buckets=SECONDS[:12])  # fmt: skip

PENDING = "conveyor_metrics"  # session.info key: the counts its transaction will add when it commits


def count(session: Session, counter: Counter, *labels: str, amount: float = 1) -> None:
    """Add to a counter once the session's transaction commits."""
    session.info.setdefault(PENDING, []).append((counter, labels, "inc", amount))


def observe(session: Session, histogram: Histogram, *labels: str, value: float) -> None:
    """Observe a value once the session's transaction commits."""
    session.info.setdefault(PENDING, []).append((histogram, labels, "observe", value))


@event.listens_for(Session, "after_commit")
def _counted(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: the outer transaction may still roll back
        return
    pending = session.info.pop(PENDING, None)
    for metric, labels, method, value in pending or ():
        child = metric.labels(*labels) if labels else metric
        getattr(child, method)(value)


@event.listens_for(Session, "after_transaction_end")
def _discarded(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the outermost transaction ended uncommitted (a savepoint's end keeps them)
        session.info.pop(PENDING, None)


def registry() -> CollectorRegistry:
    """What a scrape reads: every process's files in a multiprocess directory, else this process's metrics."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import REGISTRY

        return REGISTRY
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected)  # type: ignore[no-untyped-call]
    return collected


def render() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST
