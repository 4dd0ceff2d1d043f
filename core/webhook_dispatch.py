"""Turning job events into webhook deliveries: the dispatcher reads job_events, the ledger's own outbox.

Every finish of a job (by a worker, the reconciler or a cancel through the API) writes its `succeeded`, `failed` or
`cancelled` event in the transaction that finishes it, so reading those rows in id order misses none and needs no
hook on any of those paths. The maintenance worker reads them in batches from a cursor kept in webhook_cursor, and
in the same transaction as the cursor's move it makes each event's deliveries (once: a unique dedupe key per
webhook and event) and their jobs; it publishes those after commit.

On PostgreSQL an event id can become visible after higher ones (ids are taken when inserted, rows seen when
committed): an id the cursor passes without having seen is a gap, looked for again on each tick for GAP_SECONDS
(a rolled-back transaction leaves a gap forever; one still open fills it). SQLite has one writer, so no gaps.
With no webhook at all the dispatcher only moves its cursor to the newest event.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Job, JobEvent, JobResult, Webhook, WebhookCursor
from core.registry import Registry
from core.status import JobStatus
from core.submit import JobRequest, submit_jobs
from core.types import utcnow
from core.webhooks import DELIVERY_TYPE, JOB_EVENTS, NewDelivery, add_deliveries, delivery_payload, event_body, job_data

BATCH = 2000  # events read per tick
GAP_SECONDS = 60.0
MAX_GAPS = 10_000
CURSOR_ID = 1
# The job types whose success makes a dataset ready, and the result field that names it.
DATASET_MAKERS = ("dataset_ingest", "dataset_aggregate", "dataset_join", "dataset_query")


@dataclass
class DispatchReport:
    events: int = 0  # finish events read
    jobs: list[Job] = field(default_factory=list)  # the deliveries' jobs, to publish after commit
    gaps: int = 0


@dataclass(frozen=True)
class _Event:
    id: int
    job_id: uuid.UUID
    kind: str
    created_at: datetime


def dispatch_events(
    session: Session, *, registry: Registry, known_queues: list[str], now: datetime | None = None, batch: int = BATCH
) -> DispatchReport:
    """One tick, in the caller's transaction (which then commits and publishes `report.jobs`)."""
    now = now or utcnow()
    report = DispatchReport()
    cursor = _cursor(session)
    tenants = set(session.scalars(select(Webhook.tenant_id).distinct()))
    if not tenants:
        newest = _newest_event(session)
        if (cursor.last_event_id, cursor.gaps) != (newest, []):  # no write on an idle tick
            cursor.last_event_id, cursor.gaps = newest, []
        return report
    events, gaps = _read(session, cursor, now, batch)
    report.events, report.gaps = len(events), len(gaps)
    if gaps != cursor.gaps:
        cursor.gaps = gaps
    if events:
        cursor.last_event_id = max(cursor.last_event_id, max(e.id for e in events))
    finished = [e for e in events if e.kind in JOB_EVENTS]
    if finished:
        report.jobs = _deliver(session, finished, tenants, registry, known_queues, now)
    return report


def _cursor(session: Session) -> WebhookCursor:
    """The cursor row, locked (two maintenance workers take turns). A new one starts before the oldest event: events
    older than a webhook are not its (`_deliver`), and with no webhook at all the first tick moves it to the newest."""
    cursor = session.scalars(select(WebhookCursor).where(WebhookCursor.id == CURSOR_ID).with_for_update()).first()
    if cursor is None:
        oldest = session.execute(select(func.min(JobEvent.id))).scalar_one()
        cursor = WebhookCursor(id=CURSOR_ID, last_event_id=(oldest or 1) - 1, gaps=[])
        session.add(cursor)
        session.flush()
    return cursor


def _newest_event(session: Session) -> int:
    return int(session.execute(select(func.coalesce(func.max(JobEvent.id), 0))).scalar_one())


def _read(session: Session, cursor: WebhookCursor, now: datetime, batch: int) -> tuple[list[_Event], list[list[Any]]]:
    """The events past the cursor and those of its gaps that have appeared; the gaps still open after this."""
    columns = (JobEvent.id, JobEvent.job_id, JobEvent.kind, JobEvent.created_at)
    waiting = {int(gap_id): seen for gap_id, seen in cursor.gaps
               if now - datetime.fromisoformat(seen) < timedelta(seconds=GAP_SECONDS)}  # fmt: skip
    found: list[_Event] = []
    if waiting:
        query = select(*columns).where(JobEvent.id.in_(list(waiting)))
        found = [_Event(*row) for row in session.execute(query)]
        for event in found:
            waiting.pop(event.id)
    query = select(*columns).where(JobEvent.id > cursor.last_event_id).order_by(JobEvent.id).limit(batch)
    new = [_Event(*row) for row in session.execute(query)]
    expected = cursor.last_event_id + 1
    for event in new:  # ids skipped between the cursor and what was read: gaps
        for missing in range(expected, event.id):
            if len(waiting) < MAX_GAPS:
                waiting[missing] = now.isoformat()
        expected = event.id + 1
    return found + new, [[gap_id, seen] for gap_id, seen in sorted(waiting.items())]


def _deliver(
    session: Session,
    events: list[_Event],
    tenants: set[str],
    registry: Registry,
    known_queues: list[str],
    now: datetime,
) -> list[Job]:
    jobs = {job.id: job for job in session.scalars(select(Job).where(
        Job.id.in_({e.job_id for e in events}), Job.tenant_id.in_(tenants), Job.type != DELIVERY_TYPE))}  # fmt: skip
    if not jobs:
        return []
    succeeded = [e.job_id for e in events if e.kind == JobStatus.SUCCEEDED.value and e.job_id in jobs]
    results: dict[uuid.UUID, dict[str, Any] | None] = {}
    if succeeded:
        found = select(JobResult.job_id, JobResult.data).where(JobResult.job_id.in_(succeeded))
        results = {job_id: data for job_id, data in session.execute(found)}
    hooks: dict[str, list[tuple[Webhook, str]]] = defaultdict(list)  # a tenant's endpoints, with their URLs
    callbacks: dict[str, Webhook] = {}
    for webhook in session.scalars(select(Webhook).where(Webhook.tenant_id.in_({j.tenant_id for j in jobs.values()}))):
        if webhook.kind == "callbacks":
            callbacks[webhook.tenant_id] = webhook
        else:
            assert webhook.url is not None  # noqa: S101 - endpoints have a URL
            hooks[webhook.tenant_id].append((webhook, webhook.url))
    new: list[NewDelivery] = []
    for event in events:
        job = jobs.get(event.job_id)
        if job is None:
            continue
        result = results.get(job.id)
        for event_type, data in _events_of(event, job, result):
            targets = [(w, url) for w, url in hooks[job.tenant_id] if _subscribed(w, event_type, job, event)]
            callback = callbacks.get(job.tenant_id)
            if job.callback_url and callback is not None and event_type.startswith("job."):
                targets.append((callback, job.callback_url))
            body = event_body(event_type, data, now)
            new.extend(NewDelivery(webhook, url, event_type, body, f"{webhook.id}:{event.id}:{event_type}")
                       for webhook, url in targets)  # fmt: skip
    return _delivery_jobs(session, add_deliveries(session, new), registry, known_queues, now)


def _subscribed(webhook: Webhook, event_type: str, job: Job, event: _Event) -> bool:
    """Whether the endpoint asked for this event: its type, its job's type, and not from before the endpoint."""
    return (
        event_type in webhook.event_types
        and (not webhook.job_types or job.type in webhook.job_types)
        and event.created_at >= webhook.created_at
    )


def _events_of(event: _Event, job: Job, result: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """The webhook events one finish makes: the job's, and `dataset.ready` when it made a dataset."""
    made = [(JOB_EVENTS[event.kind], job_data(job, result))]
    if event.kind == JobStatus.SUCCEEDED.value and job.type in DATASET_MAKERS and result and result.get("dataset_id"):
        made.append(("dataset.ready", {"dataset_id": result["dataset_id"], "job_id": str(job.id), **result}))
    return made


def _delivery_jobs(session: Session, deliveries: list[Any], registry: Registry, known_queues: list[str],
                   now: datetime) -> list[Job]:  # fmt: skip
    """A job per delivery, outside any quota (a tenant at its limit still hears of its jobs)."""
    requests = [JobRequest(type=DELIVERY_TYPE, payload=delivery_payload(d), tenant_id=d.tenant_id, actor="conveyor")
                for d in deliveries]  # fmt: skip
    outcomes = submit_jobs(session, registry=registry, known_queues=known_queues, requests=requests, now=now).outcomes
    jobs = []
    for delivery, outcome in zip(deliveries, outcomes, strict=True):
        if outcome.error is not None:
            raise outcome.error  # the delivery type is Conveyor's own: a refusal is a bug, not a tenant's input
        assert outcome.job is not None  # noqa: S101
        delivery.job_id = outcome.job.id
        jobs.append(outcome.job)
    return jobs
