"""The console's Queues: each queue's state, and an admin's pause, resume and drain of the tenant's jobs in it
(core/queue_ops.py, as /v1/queues does)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from api.auth import principal
from api.console.pages import console_blueprint
from api.console.session import signed_in
from api.extension import conveyor, db
from core.errors import ConveyorError
from core.keys import Scope
from core.queries import queue_stats
from core.queue_ops import check_queue, drain_queue, pause_queue, pauses, resume_queue

bp = console_blueprint("console_queues", "/console/queues")
REASON_MAX = 500


class BadReason(ConveyorError):
    slug, status, title = "validation-error", 422, "Invalid reason"


def reason() -> str | None:
    given = request.form.get("reason", "").strip()
    if len(given) > REASON_MAX or "\x00" in given:
        raise BadReason(f"A reason is at most {REASON_MAX} characters.")
    return given or None


@bp.get("")
@signed_in(Scope.JOBS_READ)
def list_page() -> Any:
    session, tenant_id = db(), principal().tenant_id
    stats = queue_stats(session, conveyor().settings.queues, tenant_id=tenant_id)
    return render_template("console/queues.html", queues=stats, pauses=pauses(session, tenant_id))


@bp.post("/<queue>/pause")
@signed_in(Scope.ADMIN)
def pause(queue: str) -> Any:
    check_queue(queue, conveyor().settings.queues)
    pause_queue(db(), queue, tenant_id=principal().tenant_id, actor=principal().key_id, reason=reason())
    db().commit()
    flash(f"Paused {queue}: workers take none of your jobs in it until you resume it.")
    return redirect(url_for("console_queues.list_page"))


@bp.post("/<queue>/resume")
@signed_in(Scope.ADMIN)
def resume(queue: str) -> Any:
    ext = conveyor()
    check_queue(queue, ext.settings.queues)
    published = resume_queue(ext.sessions, ext.publisher, queue, tenant_id=principal().tenant_id,
                             registry=ext.registry, jobs_per_message=ext.settings.jobs_per_message)  # fmt: skip
    flash(f"Resumed {queue}: its {published} waiting jobs are published again.")
    return redirect(url_for("console_queues.list_page"))


@bp.post("/<queue>/drain")
@signed_in(Scope.ADMIN)
def drain(queue: str) -> Any:
    ext = conveyor()
    check_queue(queue, ext.settings.queues)
    why = reason() or "drained from the console"
    cancelled = drain_queue(ext.sessions, queue, tenant_id=principal().tenant_id, actor=principal().key_id, reason=why)
    flash(f"Drained {queue}: {cancelled} pending jobs cancelled.")
    return redirect(url_for("console_queues.list_page"))
