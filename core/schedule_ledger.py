"""A schedule's fire ledger: each slot it should have fired in a recent window, beside the job that slot made (read by
the unique (schedule_id, schedule_slot) index), so that a slot missed while beat was down, paused or refused, or a
job that expired before it started, shows as such; and the next slots to come."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Job, Schedule
from core.schedules import cadence_of, next_slot
from core.status import JobStatus
from core.types import utcnow

LEDGER_SLOTS = 24  # the window: this many of the latest expected slots
UPCOMING = 3


@dataclass(frozen=True)
class SlotRecord:
    slot: datetime
    job: Job | None
    # fired: it made `job`; expired: its job was cancelled unstarted, too late; missed: no job (beat was down, the
    # schedule was paused or its misfire policy coalesced it, or the job was refused); due: not fired yet, within
    # this tick's reach; upcoming: in the future; triggered: a job run by hand, outside the slots
    outcome: str


def expected_slots(schedule: Schedule, *, now: datetime, count: int = LEDGER_SLOTS) -> list[datetime]:
    """The latest `count` slots at or before now, from the schedule's first one on."""
    first_after = schedule.start_at - timedelta(microseconds=1) if schedule.start_at else schedule.created_at
    window = cadence_of(schedule).period * (count + 1)
    slot = next_slot(schedule, max(first_after, now - window))
    found: list[datetime] = []
    while slot is not None and slot <= now:
        found.append(slot)
        slot = next_slot(schedule, slot)
    return found[-count:]


def upcoming_after(schedule: Schedule, now: datetime) -> list[datetime]:
    """The next UPCOMING slots after now of an enabled schedule (none when paused or ended)."""
    if not schedule.enabled or schedule.next_fire_at is None:
        return []
    found: list[datetime] = []
    slot = next_slot(schedule, now)
    while slot is not None and len(found) < UPCOMING:
        found.append(slot)
        slot = next_slot(schedule, slot)
    return found


def fire_ledger(session: Session, schedule: Schedule, *, now: datetime | None = None) -> list[SlotRecord]:
    """The window's slots, newest first, upcoming ones on top."""
    now = now or utcnow()
    expected = expected_slots(schedule, now=now)
    since = expected[0] if expected else schedule.created_at  # before its first slot, only triggers made jobs
    made = select(Job).where(Job.schedule_id == schedule.id, Job.schedule_slot >= since, Job.schedule_slot <= now)
    jobs = {job.schedule_slot: job for job in session.scalars(made) if job.schedule_slot is not None}
    records = [SlotRecord(slot, None, "upcoming") for slot in upcoming_after(schedule, now)[::-1]]
    pending_from = schedule.next_fire_at if schedule.enabled else None
    for slot in sorted(set(expected) | set(jobs), reverse=True):
        job = jobs.get(slot)
        if job is None:
            due = pending_from is not None and slot >= pending_from
            records.append(SlotRecord(slot, None, "due" if due else "missed"))
        elif slot not in expected:
            records.append(SlotRecord(slot, job, "triggered"))
        elif job.status == JobStatus.CANCELLED.value and (job.error or {}).get("type") == "Expired":
            records.append(SlotRecord(slot, job, "expired"))
        else:
            records.append(SlotRecord(slot, job, "fired"))
    return records
