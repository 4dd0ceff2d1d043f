"""The console's Schedules: each schedule's cadence and next fires, and a schedule's page with its fire ledger (each
expected slot beside the job it made; missed and expired slots marked) and pause, resume and trigger."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, url_for

from api.auth import principal
from api.console.pages import console_blueprint
from api.console.session import signed_in
from api.extension import db
from api.schedules import enable, parse_schedule_id, trigger_now
from core.keys import Scope
from core.schedule_ledger import fire_ledger
from core.schedules import get_schedule, list_schedules

bp = console_blueprint("console_schedules", "/console/schedules")


@bp.get("")
@signed_in(Scope.SCHEDULES_READ)
def list_page() -> Any:
    schedules = list_schedules(db(), tenant_id=principal().tenant_id)
    return render_template("console/schedules.html", schedules=schedules)


@bp.get("/<schedule_id>")
@signed_in(Scope.SCHEDULES_READ)
def schedule_page(schedule_id: str) -> Any:
    session = db()
    schedule = get_schedule(session, parse_schedule_id(schedule_id), tenant_id=principal().tenant_id)
    return render_template("console/schedule.html", schedule=schedule, ledger=fire_ledger(session, schedule))


@bp.post("/<schedule_id>/pause")
@signed_in(Scope.SCHEDULES_WRITE)
def pause(schedule_id: str) -> Any:
    schedule = enable(schedule_id, False)
    flash("Paused: no slot fires until resumed.")
    return redirect(url_for("console_schedules.schedule_page", schedule_id=schedule.id))


@bp.post("/<schedule_id>/resume")
@signed_in(Scope.SCHEDULES_WRITE)
def resume(schedule_id: str) -> Any:
    schedule = enable(schedule_id, True)
    flash("Resumed: it fires again from its next slot.")
    return redirect(url_for("console_schedules.schedule_page", schedule_id=schedule.id))


@bp.post("/<schedule_id>/trigger")
@signed_in(Scope.SCHEDULES_WRITE)
def trigger(schedule_id: str) -> Any:
    job = trigger_now(schedule_id)
    flash("Triggered: its job runs now.")
    return redirect(url_for("console_jobs.job_page", job_id=job.id))
