"""Schedules: declare, change, pause, trigger and read periodic jobs. Beat's firing of due slots is core/firing.py.

Functions take the caller's session first and never commit.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.cadence import Cadence, Cron, Interval, InvalidCadence, upcoming, zone
from core.errors import ConveyorError, PayloadInvalid
from core.jobs import record_event
from core.models import Job, Schedule
from core.queries import page_of_jobs
from core.registry import Registry
from core.slot_template import render_payload
from core.submit import JobRequest, submit_job, validated_request
from core.types import utcnow

MAX_INTERVAL_SECONDS = 366 * 24 * 3600
# Bounds keep slot arithmetic far from datetime's year 1 and year 9999 edges.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
UPCOMING_COUNT = 5
# Fields whose change moves the slots: a change re-plans from now, any other edit keeps the pending slot.
CADENCE_FIELDS = frozenset({"cron", "timezone", "interval_seconds", "start_at", "end_at"})


class ScheduleNotFound(ConveyorError):
    slug, status, title = "not-found", 404, "Not found"


class ScheduleNameTaken(ConveyorError):
    slug, status, title = "schedule-name-taken", 409, "A schedule with this name exists"


class ScheduleInvalid(ConveyorError):
    slug, status, title = "validation-error", 422, "Request validation failed"


class ScheduleDefinition(BaseModel):
    """What a user declares: over the API (POST, or PATCH merged into the current one) or in a schedule file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description="Unique; e.g. nightly-import.",
    )
    type: str = Field(min_length=1, max_length=100, description="The job type to submit at every slot.")
    payload: dict[str, Any] = Field(
        default_factory=dict,
        description="The job's payload; string values may use {{ slot }}, {{ slot_utc }}, {{ slot_date }}, "
        "{{ slot_time }}, {{ slot_unix }}, {{ slot_previous_date }} (the slot in the schedule's time zone).",
    )
    cron: str | None = Field(
        default=None, max_length=200, description="Five-field cron expression, read in `timezone`, e.g. `0 2 * * *`."
    )
    timezone: str = Field(default="UTC", max_length=64, description="IANA zone of the cron expression and templates.")
    interval_seconds: int | None = Field(
        default=None, ge=1, le=MAX_INTERVAL_SECONDS, description="Or: fire every N seconds (from start_at)."
    )
    start_at: AwareDatetime | None = Field(default=None, description="No slot before this time.")
    end_at: AwareDatetime | None = Field(default=None, description="No slot after this time.")
    enabled: bool = Field(default=True, description="False: paused.")
    misfire: Literal["skip", "all", "none"] = Field(
        default="skip",
        description="Slots that came due while beat was down: `skip` fires only the latest, `all` fires each (up "
        "to catchup_limit), `none` fires none (a slot within misfire_grace_seconds is not missed).",
    )
    misfire_grace_seconds: int = Field(default=60, ge=1, le=7 * 24 * 3600)
    catchup_limit: int = Field(default=100, ge=1, le=10_000, description="`all`: at most this many missed slots.")
    expires_after_seconds: int | None = Field(
        default=None,
        ge=1,
        le=MAX_INTERVAL_SECONDS,
        description="A fired job not started within this is cancelled as expired. Default: one period (at least "
        "misfire_grace_seconds) for `skip`/`none`; never for `all`.",
    )
    queue: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    priority: int | None = Field(default=None, ge=0, le=9)
    max_attempts: int | None = Field(default=None, ge=1, le=100)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None:
            value = " ".join(value.split())
            try:
                Cron(value)
            except InvalidCadence as exc:
                raise ValueError(exc.detail) from None
        return value

    @field_validator("start_at", "end_at")
    @classmethod
    def _plausible_time(cls, value: datetime | None) -> datetime | None:
        if value is not None and not EARLIEST <= value <= LATEST:
            raise ValueError("must be between 1970-01-01 and 9000-01-01")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zone(value)
        except InvalidCadence as exc:
            raise ValueError(exc.detail) from None
        return value

    @model_validator(mode="after")
    def _one_cadence(self) -> ScheduleDefinition:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("give exactly one of cron (with timezone) or interval_seconds")
        if self.start_at is not None and self.end_at is not None and self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        return self


def parse_definition(data: dict[str, Any]) -> ScheduleDefinition:
    """Validate a definition given as data (a PATCH merge, a file entry): errors become a 422 problem."""
    try:
        return ScheduleDefinition.model_validate(data)
    except ValidationError as exc:
        errors = [{"field": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]} for e in exc.errors()]
        raise ScheduleInvalid("The schedule is not valid; see errors.", errors=errors) from None


def definition_of(schedule: Schedule) -> ScheduleDefinition:
    return ScheduleDefinition.model_validate(
        {name: getattr(schedule, name) for name in ScheduleDefinition.model_fields}
    )


def cadence_of(schedule: Schedule) -> Cadence:
    if schedule.interval_seconds is not None:
        anchor = schedule.start_at or schedule.created_at.replace(microsecond=0)  # whole seconds read better
        return Interval(schedule.interval_seconds, anchor=anchor)
    assert schedule.cron is not None  # noqa: S101 - the one_cadence CHECK holds
    return Cron(schedule.cron, schedule.timezone)


def next_slot(schedule: Schedule, after: datetime) -> datetime | None:
    """The first slot after `after`, within start_at and end_at; None once the schedule has ended."""
    if schedule.start_at is not None and after < schedule.start_at:
        after = schedule.start_at - timedelta(microseconds=1)
    slot = cadence_of(schedule).next_after(after)
    return None if schedule.end_at is not None and slot > schedule.end_at else slot


def upcoming_slots(schedule: Schedule, count: int = UPCOMING_COUNT) -> list[datetime]:
    """The next fire times of an enabled schedule (none when paused or ended)."""
    first = schedule.next_fire_at
    if not schedule.enabled or first is None:
        return []
    return [first, *upcoming(cadence_of(schedule), first, count - 1, end_at=schedule.end_at)]


def expires_after(schedule: Schedule) -> timedelta | None:
    if schedule.expires_after_seconds is not None:
        return timedelta(seconds=schedule.expires_after_seconds)
    if schedule.misfire == "all":
        return None
    return max(cadence_of(schedule).period, timedelta(seconds=schedule.misfire_grace_seconds))


def job_request_for(schedule: Schedule, slot: datetime, now: datetime) -> JobRequest:
    """The job of one slot. (schedule_id, schedule_slot) is unique in the database: one job per slot, always."""
    lifetime = expires_after(schedule)
    return JobRequest(
        type=schedule.type,
        payload=render_payload(schedule.payload, slot, schedule.timezone),
        priority=schedule.priority,
        queue=schedule.queue,
        max_attempts=schedule.max_attempts,
        expires_at=None if lifetime is None else now + lifetime,
        schedule_id=schedule.id,
        schedule_slot=slot,
        tenant_id=schedule.tenant_id,
    )


def _check_job_template(schedule: Schedule, registry: Registry, known_queues: list[str], now: datetime) -> None:
    """Refuse now what would fail at every slot: unknown type or queue, a payload the type rejects."""
    slot = schedule.next_fire_at or now
    try:
        validated_request(registry, known_queues, job_request_for(schedule, slot, now))
    except PayloadInvalid as exc:
        exc.detail = f"{exc.detail} (checked with the payload rendered for the slot {slot.isoformat()})"
        raise


def get_schedule(
    session: Session, schedule_id: uuid.UUID, *, tenant_id: str = "default", lock: bool = False
) -> Schedule:
    query = select(Schedule).where(Schedule.id == schedule_id, Schedule.tenant_id == tenant_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    schedule = session.scalars(query).one_or_none()
    if schedule is None:
        raise ScheduleNotFound(f"No schedule with id {schedule_id}.")
    return schedule


def list_schedules(session: Session, *, tenant_id: str = "default") -> list[Schedule]:
    return list(session.scalars(select(Schedule).where(Schedule.tenant_id == tenant_id).order_by(Schedule.name)))


def create_schedule(
    session: Session,
    definition: ScheduleDefinition,
    *,
    registry: Registry,
    known_queues: list[str],
    source: str = "api",
    tenant_id: str = "default",
    now: datetime | None = None,
) -> Schedule:
    now = now or utcnow()
    schedule = Schedule(
        id=uuid.uuid4(), tenant_id=tenant_id, source=source, missed_slots=0, created_at=now, updated_at=now
    )
    _apply(schedule, definition)
    # start_at is inclusive even when it is now; an interval without one first fires one interval after creation.
    after = now - timedelta(microseconds=1) if schedule.start_at is not None else now
    first = next_slot(schedule, after)
    if first is None:
        raise ScheduleInvalid(
            f"end_at {schedule.end_at} comes before the first slot: this schedule would never fire.",
            errors=[{"field": "end_at", "message": "before the first slot"}],
        )
    schedule.next_fire_at = first if schedule.enabled else None
    _check_job_template(schedule, registry, known_queues, now)
    _insert(session, schedule)
    return schedule


def update_schedule(
    session: Session,
    schedule_id: uuid.UUID,
    changes: dict[str, Any],
    *,
    registry: Registry,
    known_queues: list[str],
    tenant_id: str = "default",
    now: datetime | None = None,
) -> Schedule:
    """Merge `changes` into the definition. A change of cadence (or a resume) re-plans from now: it takes effect at
    the next slot of the new definition; other edits apply to the slot already pending."""
    now = now or utcnow()
    schedule = get_schedule(session, schedule_id, tenant_id=tenant_id, lock=True)
    current = definition_of(schedule)
    merged = parse_definition(current.model_dump() | changes)
    replan = any(getattr(merged, f) != getattr(current, f) for f in CADENCE_FIELDS) or (
        merged.enabled and not current.enabled
    )
    _apply(schedule, merged)
    if not schedule.enabled:
        schedule.next_fire_at = None
    elif replan or schedule.next_fire_at is None:
        schedule.next_fire_at = next_slot(schedule, now)
    schedule.updated_at = now
    _check_job_template(schedule, registry, known_queues, now)
    _flush_unique(session, merged.name)
    return schedule


def set_enabled(
    session: Session, schedule_id: uuid.UUID, enabled: bool, *, tenant_id: str = "default", now: datetime | None = None
) -> Schedule:
    """Pause, or resume from now: slots that passed while paused are not fired (pausing means "not now")."""
    now = now or utcnow()
    schedule = get_schedule(session, schedule_id, tenant_id=tenant_id, lock=True)
    if schedule.enabled != enabled:
        schedule.enabled = enabled
        schedule.next_fire_at = next_slot(schedule, now) if enabled else None
        schedule.updated_at = now
    return schedule


def delete_schedule(session: Session, schedule_id: uuid.UUID, *, tenant_id: str = "default") -> None:
    """The schedule goes; the jobs it made stay (their schedule_id becomes NULL)."""
    session.delete(get_schedule(session, schedule_id, tenant_id=tenant_id, lock=True))
    session.flush()


def trigger_schedule(
    session: Session,
    schedule_id: uuid.UUID,
    *,
    registry: Registry,
    known_queues: list[str],
    tenant_id: str = "default",
    now: datetime | None = None,
    active_jobs_limit: int = 0,
) -> Job:
    """Run the schedule's job now, outside its slots (its slot is the trigger time); the schedule is unchanged."""
    now = now or utcnow()
    schedule = get_schedule(session, schedule_id, tenant_id=tenant_id)
    job, _ = submit_job(session, registry=registry, known_queues=known_queues,
                                request=job_request_for(schedule, now, now), now=now,
                                active_jobs_limit=active_jobs_limit)  # fmt: skip
    record_event(session, job.id, "triggered", detail={"schedule_id": str(schedule.id), "by": "api"}, now=now)
    return job


def list_runs(
    session: Session, schedule_id: uuid.UUID, *, limit: int, cursor: str | None, tenant_id: str = "default"
) -> tuple[list[Job], str | None]:
    """The jobs a schedule made, newest slot first."""
    get_schedule(session, schedule_id, tenant_id=tenant_id)
    query = select(Job).where(Job.tenant_id == tenant_id, Job.schedule_id == schedule_id)
    return page_of_jobs(session, query, key=Job.schedule_slot, limit=limit, cursor=cursor)


def _apply(schedule: Schedule, definition: ScheduleDefinition) -> None:
    for name, value in definition.model_dump().items():
        setattr(schedule, name, value)


def _insert(session: Session, schedule: Schedule) -> None:
    session.add(schedule)
    _flush_unique(session, schedule.name)


def _flush_unique(session: Session, name: str) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise ScheduleNameTaken(
            f"A schedule named {name!r} already exists: change it with PATCH, or choose another name."
        ) from None
