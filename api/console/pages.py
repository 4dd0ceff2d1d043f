"""The console's sign-in and sign-out, its overview of the queues, and the HTML error page of every console route."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from api.auth import principal
from api.console.session import (
    check_csrf,
    current,
    no_store,
    safe_next,
    sign_in,
    sign_out,
    signed_in,
)
from api.extension import conveyor, db
from core.errors import ConveyorError
from core.keys import KeyInvalid, Scope
from core.queries import has_jobs, last_hour_by_minute, queue_stats
from core.queue_ops import pauses


def error_page(status: int, title: str, detail: str) -> Any:
    return render_template("console/error.html", status=status, title=title, detail=detail), status


def http_error(error: HTTPException) -> Any:
    return error_page(error.code or 500, error.name, error.description or "")


def conveyor_error(error: ConveyorError) -> Any:
    return error_page(error.status, error.title, error.detail)


def console_blueprint(name: str, url_prefix: str) -> Blueprint:
    """A blueprint of console pages: its errors as an HTML page (the app's handlers answer problem+json, for /v1),
    its answers never cached and loading nothing from elsewhere."""
    blueprint = Blueprint(name, __name__, url_prefix=url_prefix, template_folder="templates")
    blueprint.register_error_handler(HTTPException, http_error)
    blueprint.register_error_handler(ConveyorError, conveyor_error)
    blueprint.after_request(no_store)
    return blueprint


bp = console_blueprint("console", "/console")


@bp.get("/sign-in")
def sign_in_page() -> Any:
    if current() is not None:
        return redirect(safe_next(request.args.get("next")))
    return render_template("console/sign_in.html", next=request.args.get("next", ""), error=None)


@bp.post("/sign-in")
def sign_in_submit() -> Any:
    # No session yet, so no CSRF token to check: SameSite=Lax keeps another site's form from carrying a cookie, and
    # a forged sign-in needs the victim's key, which the forger would then already have.
    token = request.form.get("key", "")
    target = request.form.get("next")
    try:
        sign_in(token)
    except KeyInvalid as exc:
        page = render_template("console/sign_in.html", next=target or "", error=exc.detail)
        return page, 401
    return redirect(safe_next(target))


@bp.post("/sign-out")
def sign_out_submit() -> Any:
    check_csrf()
    sign_out()
    flash("Signed out.")
    return redirect(url_for("console.sign_in_page"))


@bp.get("")
@signed_in(Scope.JOBS_READ)
def overview() -> Any:
    session, tenant_id = db(), principal().tenant_id
    queues = queue_stats(session, conveyor().settings.queues, tenant_id=tenant_id)
    held = pauses(session, tenant_id)
    minutes = last_hour_by_minute(session, tenant_id=tenant_id)
    empty = not has_jobs(session, tenant_id=tenant_id)
    return render_template("console/overview.html", queues=queues, pauses=held, minutes=minutes, empty=empty)
