"""Firing schedules: beat's tick turns every due slot into exactly one job, following the misfire policy.

Exactly once per slot holds by construction, not by timing: due schedules are locked (`FOR UPDATE SKIP LOCKED` on
PostgreSQL; SQLite has one writer), and every job carries (schedule_id, schedule_slot) under a unique index, so two
beats, a restarted beat or a clock jump find the slot taken instead of making a second job.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import metrics
from core.cadence import Cadence, Interval
from core.errors import ConveyorError
from core.models import Job, Schedule
from core.registry import Registry
from core.schedules import cadence_of, job_request_for, next_slot
from core.submit import submit_jobs
from core.types import utcnow

log = logging.getLogger(__name__)


@dataclass
class FiringReport:
    jobs: list[Job] = field(default_factory=list)  # created now: the caller commits, then publishes them
    schedules: int = 0
    missed: int = 0
    errors: int = 0


def due_slots(
    cadence: Cadence, first: datetime, now: datetime, *, end_at: datetime | None, keep: int
) -> tuple[list[datetime], int]:
    """The slots from `first` (a slot) up to now and end_at: the newest `keep` of them, and how many there were."""
    last = now if end_at is None else min(now, end_at)
    if first > last:
        return [], 0
    if isinstance(cadence, Interval):  # arithmetic: a 1-second interval after a week's outage is 604,800 slots
        step = cadence.period
        count = (last - first) // step + 1
        start = first + (count - min(count, keep)) * step
        return [start + i * step for i in range(min(count, keep))], count
    kept: deque[datetime] = deque(maxlen=keep)
    count, slot = 0, first
    while slot <= last:
        kept.append(slot)
        count += 1
        slot = cadence.next_after(slot)
    return list(kept), count


def slots_to_fire(misfire: str, due: list[datetime], now: datetime, grace: timedelta) -> list[datetime]:
    """The misfire policy. `due` is oldest first; only its last slot can be on time."""
    if not due or misfire == "all":
        return due
    latest = due[-1]
    if misfire == "none" and now - latest > grace:
        return []
    return [latest]  # skip: coalesce whatever was missed into the latest slot


def fire_due_schedules(
    session: Session,
    *,
    registry: Registry,
    known_queues: list[str],
    now: datetime | None = None,
    batch: int = 100,
    active_jobs_limit: int = 0,
) -> FiringReport:
    """One tick. The caller commits, then publishes `report.jobs`. A slot whose job would pass its tenant's quota
    of unfinished jobs is not fired (the schedule's last_error says so)."""
    now = now or utcnow()
    query = (
        select(Schedule)
        .where(Schedule.enabled.is_(True), Schedule.next_fire_at <= now)
        .order_by(Schedule.next_fire_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    report = FiringReport()
    for schedule in session.scalars(query):
        _fire(session, schedule, registry=registry, known_queues=known_queues, now=now, report=report,
              active_jobs_limit=active_jobs_limit)  # fmt: skip
    return report


def _fire(
    session: Session,
    schedule: Schedule,
    *,
    registry: Registry,
    known_queues: list[str],
    now: datetime,
    report: FiringReport,
    active_jobs_limit: int,
) -> None:
    assert schedule.next_fire_at is not None  # noqa: S101 - selected by next_fire_at <= now
    due, count = due_slots(
        cadence_of(schedule), schedule.next_fire_at, now, end_at=schedule.end_at, keep=schedule.catchup_limit
    )
    fire = slots_to_fire(schedule.misfire, due, now, timedelta(seconds=schedule.misfire_grace_seconds))
    error: str | None = None
    try:
        requests = [job_request_for(schedule, slot, now) for slot in fire]
        outcomes = submit_jobs(session, registry=registry, known_queues=known_queues, requests=requests, now=now,
                               active_jobs_limit=active_jobs_limit).outcomes  # fmt: skip
    except ConveyorError as exc:  # e.g. the job type was uninstalled after the schedule was made
        outcomes, error = [], exc.detail
    refused = 0  # slots whose job was refused (e.g. over the tenant's quota): missed, as the misfire policy's are
    for outcome in outcomes:
        if outcome.error is not None:
            error = outcome.error.detail
            refused += 1
        elif outcome.created and outcome.job is not None:
            report.jobs.append(outcome.job)
            schedule.last_job_id = outcome.job.id
    if error is not None:
        report.errors += 1
        log.warning("schedule %s (%s) could not fire: %s", schedule.name, schedule.id, error)
    schedule.last_error = error
    if fire:
        schedule.last_slot_at = fire[-1]
    missed = count - len(fire) + refused
    schedule.missed_slots += missed
    report.missed += missed
    if missed:
        metrics.count(session, metrics.SCHEDULE_MISSED, amount=missed)
    report.schedules += 1
    schedule.next_fire_at = next_slot(schedule, now)
    schedule.updated_at = now
