"""The console's Failures: failed and retrying jobs grouped by cause (core/failures.py), a group's jobs and sample
traceback, and "retry all" / "cancel all" of a group as one bounded operation (the API's /v1/failures does the same)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from api.auth import principal
from api.console.pages import console_blueprint
from api.console.session import signed_in
from api.extension import conveyor, db
from api.failures import existing_group
from core.failures import GroupFilter, get_group, jobs_of_group, list_groups, normalised
from core.keys import Scope
from core.models import FAILING_STATUSES
from core.queue_ops import RETRY_LIMIT_MAX, cancel_group, retry_group

bp = console_blueprint("console_failures", "/console/failures")
PAGE = 50


def group_filter() -> GroupFilter:
    status = request.args.get("status") or None
    job_type = request.args.get("type") or None
    return GroupFilter(status=status if status in FAILING_STATUSES else None, type=job_type)


@bp.get("")
@signed_in(Scope.JOBS_READ)
def list_page() -> Any:
    matching = group_filter()
    groups, next_cursor = list_groups(db(), tenant_id=principal().tenant_id, matching=matching, limit=PAGE,
                                      cursor=request.args.get("cursor") or None)  # fmt: skip
    return render_template("console/failures.html", groups=groups, next_cursor=next_cursor, matching=matching,
                           types=sorted(spec.name for spec in conveyor().registry), normalised=normalised)  # fmt: skip


@bp.get("/<fingerprint>")
@signed_in(Scope.JOBS_READ)
def group_page(fingerprint: str) -> Any:
    session, tenant_id = db(), principal().tenant_id
    group = get_group(session, fingerprint, tenant_id=tenant_id, matching=GroupFilter())
    jobs, next_cursor = jobs_of_group(session, group.fingerprint, tenant_id=tenant_id, matching=GroupFilter(),
                                      limit=PAGE, cursor=request.args.get("cursor") or None)  # fmt: skip
    return render_template("console/failure.html", group=group, jobs=jobs, next_cursor=next_cursor,
                           normalised=normalised, limit=RETRY_LIMIT_MAX)  # fmt: skip


@bp.post("/<fingerprint>/retry")
@signed_in(Scope.ADMIN)
def retry(fingerprint: str) -> Any:
    found, ext = existing_group(fingerprint, principal().tenant_id), conveyor()
    report = retry_group(ext.sessions, ext.publisher, found, tenant_id=principal().tenant_id, actor=principal().key_id,
                         limit=RETRY_LIMIT_MAX)  # fmt: skip
    more = " More are left: retry again for the next ones." if report.more else ""
    flash(f"Queued {report.retried} failed jobs again.{more}")
    return redirect(url_for("console_failures.group_page", fingerprint=found))


@bp.post("/<fingerprint>/cancel")
@signed_in(Scope.ADMIN)
def cancel(fingerprint: str) -> Any:
    found = existing_group(fingerprint, principal().tenant_id)
    report = cancel_group(conveyor().sessions, found, tenant_id=principal().tenant_id, actor=principal().key_id,
                          limit=RETRY_LIMIT_MAX)  # fmt: skip
    more = " More are left: cancel again for the next ones." if report.more else ""
    flash(f"Cancelled {report.cancelled} retrying jobs.{more}")
    return redirect(url_for("console_failures.group_page", fingerprint=found))
