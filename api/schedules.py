"""/v1/schedules: periodic jobs — create, read (with the next fire times), change, pause, resume, trigger, runs."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import url_for

from api.auth import audit, requires, tenant
from api.extension import conveyor, db, publish_job
from api.jobs import job_response
from api.schemas import JobPage, JobRead, RunListQuery, ScheduleList, ScheduleRead, ScheduleUpdate
from core.keys import Scope
from core.models import Job, Schedule
from core.quotas import check_schedules
from core.schedules import (
    ScheduleDefinition,
    ScheduleNotFound,
    create_schedule,
    delete_schedule,
    get_schedule,
    list_runs,
    list_schedules,
    set_enabled,
    trigger_schedule,
    update_schedule,
)

bp = APIBlueprint("schedules", __name__, url_prefix="/v1/schedules", tag="Schedules")

INVALID = "Invalid cron, time zone, interval, bounds; unknown job type or queue; payload the type rejects"


def parse_schedule_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ScheduleNotFound(f"No schedule with id {raw!r} (schedule ids are UUIDs).") from None


def schedule_location(schedule_id: uuid.UUID) -> dict[str, str]:
    return {"Location": url_for("schedules.get_one", schedule_id=str(schedule_id))}


@bp.post("")
@requires(Scope.SCHEDULES_WRITE)
@bp.input(ScheduleDefinition, location="json", arg_name="body")
@bp.output(ScheduleRead, status_code=201)
@bp.doc(summary="Create a schedule", responses={409: "The name is taken", 415: "Not JSON", 422: INVALID})
def create(body: ScheduleDefinition) -> Any:
    ext, session = conveyor(), db()
    check_schedules(session, tenant(), ext.settings.quota_schedules)
    schedule = create_schedule(session, body, registry=ext.registry, known_queues=ext.settings.queues,
                               tenant_id=tenant())  # fmt: skip
    audit("schedule.created", "schedule", schedule.id, {"name": schedule.name})
    session.commit()
    return ScheduleRead.of(schedule), 201, schedule_location(schedule.id)


@bp.get("")
@requires(Scope.SCHEDULES_READ)
@bp.output(ScheduleList)
@bp.doc(summary="List schedules by name")
def list_all() -> Any:
    return ScheduleList(items=[ScheduleRead.of(s) for s in list_schedules(db(), tenant_id=tenant())])


@bp.get("/<schedule_id>")
@requires(Scope.SCHEDULES_READ)
@bp.output(ScheduleRead)
@bp.doc(summary="Read a schedule with its next five fire times", responses={404: "No such schedule"})
def get_one(schedule_id: str) -> Any:
    return ScheduleRead.of(get_schedule(db(), parse_schedule_id(schedule_id), tenant_id=tenant()))


@bp.patch("/<schedule_id>")
@requires(Scope.SCHEDULES_WRITE)
@bp.input(ScheduleUpdate, location="json", arg_name="body")
@bp.output(ScheduleRead)
@bp.doc(
    summary="Change a schedule (takes effect at the next slot)",
    responses={404: "No such schedule", 409: "The new name is taken", 415: "Not JSON", 422: INVALID},
)
def update(schedule_id: str, body: Any) -> Any:
    ext, session = conveyor(), db()
    changes = body.model_dump(exclude_unset=True)
    schedule = update_schedule(
        session,
        parse_schedule_id(schedule_id),
        changes,
        registry=ext.registry,
        known_queues=ext.settings.queues,
        tenant_id=tenant(),
    )
    audit("schedule.updated", "schedule", schedule.id, {"fields": sorted(changes)})
    session.commit()
    return ScheduleRead.of(schedule)


@bp.delete("/<schedule_id>")
@requires(Scope.SCHEDULES_WRITE)
@bp.output({}, status_code=204)
@bp.doc(summary="Delete a schedule (the jobs it made stay)", responses={404: "No such schedule"})
def delete(schedule_id: str) -> Any:
    session = db()
    schedule_uuid = parse_schedule_id(schedule_id)
    delete_schedule(session, schedule_uuid, tenant_id=tenant())
    audit("schedule.deleted", "schedule", schedule_uuid)
    session.commit()
    return ""


def enable(schedule_id: str, enabled: bool) -> Schedule:
    """Pause or resume the caller's schedule, audited and committed (the API's and the console's)."""
    session = db()
    schedule = set_enabled(session, parse_schedule_id(schedule_id), enabled, tenant_id=tenant())
    audit("schedule.resumed" if enabled else "schedule.paused", "schedule", schedule.id)
    session.commit()
    return schedule


def _set_enabled(schedule_id: str, enabled: bool) -> ScheduleRead:
    return ScheduleRead.of(enable(schedule_id, enabled))


@bp.post("/<schedule_id>/pause")
@requires(Scope.SCHEDULES_WRITE)
@bp.output(ScheduleRead)
@bp.doc(summary="Pause: no slot fires until resumed", responses={404: "No such schedule"})
def pause(schedule_id: str) -> Any:
    return _set_enabled(schedule_id, False)


@bp.post("/<schedule_id>/resume")
@requires(Scope.SCHEDULES_WRITE)
@bp.output(ScheduleRead)
@bp.doc(summary="Resume from now (slots passed while paused are not fired)", responses={404: "No such schedule"})
def resume(schedule_id: str) -> Any:
    return _set_enabled(schedule_id, True)


@bp.post("/<schedule_id>/trigger")
@requires(Scope.SCHEDULES_WRITE)
@bp.output(JobRead, status_code=202)
@bp.doc(summary="Run the schedule's job now, outside its slots", responses={404: "No such schedule", 422: INVALID})
def trigger(schedule_id: str) -> Any:
    return job_response(trigger_now(schedule_id), 202)


def trigger_now(schedule_id: str) -> Job:
    """Run the caller's schedule's job now, audited, committed and published (the API's and the console's)."""
    ext, session = conveyor(), db()
    job = trigger_schedule(
        session,
        parse_schedule_id(schedule_id),
        registry=ext.registry,
        known_queues=ext.settings.queues,
        tenant_id=tenant(),
        active_jobs_limit=ext.settings.quota_active_jobs,
    )
    audit("schedule.triggered", "schedule", parse_schedule_id(schedule_id), {"job_id": str(job.id)})
    session.commit()
    publish_job(job)
    return job


@bp.get("/<schedule_id>/runs")
@requires(Scope.SCHEDULES_READ)
@bp.input(RunListQuery, location="query", arg_name="query")
@bp.output(JobPage)
@bp.doc(summary="The jobs the schedule made, newest slot first", responses={400: "Bad cursor", 404: "No such schedule"})
def runs(schedule_id: str, query: RunListQuery) -> Any:
    jobs, next_cursor = list_runs(db(), parse_schedule_id(schedule_id), limit=query.limit, cursor=query.cursor,
                                  tenant_id=tenant())  # fmt: skip
    return JobPage(items=[JobRead.of(j) for j in jobs], next_cursor=next_cursor)
