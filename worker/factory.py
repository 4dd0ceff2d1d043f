"""The Celery app factory: the baseline config, one task per job type (`jobs.<type>`), beat's schedule, signals."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore, Retry
from celery.signals import heartbeat_sent, setup_logging, worker_init, worker_process_init
from prometheus_client import start_http_server

from core import logs, metrics, tracing
from core.queue import REQUEST_ID_HEADER, make_celery, task_name
from core.queue_names import QueueNames
from core.registry import JobSpec, Registry, load_registry
from core.settings import Settings
from worker.executor import Delivery, MessageOutcome, execute_message
from worker.maintenance import run_prune, run_reconcile, run_schedules, run_webhooks
from worker.runtime import WorkerRuntime

RECONCILE_TASK = "maintenance.reconcile"
SCHEDULES_TASK = "maintenance.schedules"
PRUNE_TASK = "maintenance.prune"


def create_worker_app(settings: Settings | None = None, registry: Registry | None = None) -> Celery:
    settings = settings or Settings()
    registry = registry or load_registry()
    app = make_celery(settings, name="conveyor")
    runtime = WorkerRuntime(settings, registry, app)
    app.conf.conveyor_runtime = runtime

    for spec in registry:
        _register_job_task(app, runtime, spec)

    # The ticks send no task events: Flower's task history is the jobs', not a tick's every second.
    @app.task(name=RECONCILE_TASK, bind=True, ignore_result=True, acks_late=False, send_events=False)
    def reconcile_task(self: Task) -> dict[str, Any]:
        return run_reconcile(runtime)

    @app.task(name=SCHEDULES_TASK, bind=True, ignore_result=True, acks_late=False, send_events=False)
    def schedules_task(self: Task) -> dict[str, Any]:
        # The webhook dispatcher rides the schedules' tick: one message a second in Flower, not two.
        return run_schedules(runtime) | {"webhooks": run_webhooks(runtime)}

    @app.task(name=PRUNE_TASK, bind=True, ignore_result=True, acks_late=False, send_events=False)
    def prune_task(self: Task) -> dict[str, Any]:
        return run_prune(runtime)

    maintenance = (RECONCILE_TASK, SCHEDULES_TASK, PRUNE_TASK)
    app.conf.task_routes = {name: {"queue": QueueNames.MAINTENANCE} for name in maintenance}
    # Beat only ticks; the maintenance worker does the work against the database. Two beats send twice the ticks
    # and still make one job per slot (core/firing.py).
    app.conf.beat_schedule = {
        name: {
            "task": task,
            "schedule": interval,
            # A tick nobody ran in time is worthless: the next one does the same work.
            "options": {"queue": QueueNames.MAINTENANCE, "expires": max(interval * 3, 5)},
        }
        for name, task, interval in (
            ("reconcile", RECONCILE_TASK, settings.reconcile_interval),
            ("schedules", SCHEDULES_TASK, settings.schedule_tick),
            ("prune", PRUNE_TASK, settings.prune_interval),
        )
    }

    def _reset_after_fork(**_: Any) -> None:
        runtime.after_fork()
        if settings.tracing:  # in each pool child: a span per job's message, continuing the request's trace
            from opentelemetry.instrumentation.celery import CeleryInstrumentor

            tracing.configure("conveyor-worker")
            CeleryInstrumentor().instrument()

    worker_process_init.connect(_reset_after_fork, weak=False)

    def _serve_metrics(**_: Any) -> None:  # the main process, before it forks its pool
        if settings.metrics_port:
            start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=metrics.registry())

    def _heartbeat(sender: Any = None, **_: Any) -> None:  # the main process, every few seconds (Celery's -E)
        hostname = getattr(getattr(sender, "eventer", None), "hostname", None) or "worker"
        metrics.HEARTBEAT.labels(hostname).set(time.time())

    def _configure_logging(loglevel: Any = "INFO", **_: Any) -> None:  # worker and beat; replaces Celery's own setup
        logs.configure(loglevel or settings.log_level, settings.log_format)

    setup_logging.connect(_configure_logging, weak=False)
    worker_init.connect(_serve_metrics, weak=False)
    heartbeat_sent.connect(_heartbeat, weak=False)
    return app


def _register_job_task(app: Celery, runtime: WorkerRuntime, spec: JobSpec) -> None:
    def run_job(self: Task, *job_ids: str) -> str:  # one id, or several of a batch (CONVEYOR_JOBS_PER_MESSAGE)
        request = self.request
        delivery = Delivery(request.hostname or "worker", (request.delivery_info or {}).get("routing_key"),
                            request.get(REQUEST_ID_HEADER))  # fmt: skip
        return celery_state(self, execute_message(runtime, spec, job_ids, delivery))

    run_job.__name__ = run_job.__qualname__ = f"job_{spec.name}"
    app.task(
        name=task_name(spec.name),
        bind=True,
        queue=spec.queue,
        acks_late=True,
        reject_on_worker_lost=True,
        ignore_result=True,
        time_limit=spec.time_limit,
        soft_time_limit=spec.soft_time_limit,
    )(run_job)


def celery_state(task: Task, outcome: MessageOutcome) -> str:
    """Tell Celery, and so Flower, what the ledger says: an attempt that will be retried is RETRY (Celery's own
    retry state and event, with the error as its reason; the ledger's backoff publishes the next attempt, as a new
    task whose `retries` header counts the attempts before it), a job failed for good is FAILURE, a job cancelled
    while it ran is REVOKED. Anything else succeeded as a message (a duplicate delivery is skipped): SUCCESS, with
    the counts as its result. Of a message that woke several jobs, the first error decides."""
    if outcome.error is not None:
        if outcome.runs_again:
            raise Retry(f"{type(outcome.error).__name__}: {outcome.error}", exc=outcome.error) from outcome.error
        raise outcome.error
    if outcome.all_cancelled:
        task.send_event("task-revoked", terminated=False, signum=None, expired=False)
        raise Ignore()  # acknowledged; no task-succeeded after the task-revoked
    return str(outcome)
