"""/healthz (the process answers) and /readyz (database migrated and reachable, broker reachable; beat reported)."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from api.extension import conveyor
from api.problems import RETRY_AFTER_SECONDS, problem
from api.schemas import HealthRead
from core.doctor import check_beat, check_database

bp = APIBlueprint("health", __name__, tag="Health")


@bp.get("/healthz")
@bp.output(HealthRead)
@bp.doc(summary="Liveness: the API process answers")
def healthz() -> Any:
    return HealthRead(status="ok")


@bp.get("/readyz")
@bp.output(HealthRead)
@bp.doc(
    summary="Readiness: the database (migrated to this code's head) and the broker answer",
    description="503 while the database or the broker is unreachable or the database is not migrated to this "
    "code's head revision. `beat` and `clock` are reported too, without making the API unready: `conveyor doctor` "
    "checks the rest (workers per queue, the maintenance worker, Flower).",
    responses={503: "A dependency is down, or the database is not migrated"},
)
def readyz() -> Any:
    ext = conveyor()
    found = {check.name: check for check in check_database(ext.engine, ext.settings)}
    # Short states only: this answers without a key, so never a host name, URL or error text.
    checks = {"database": "ok" if found["database"].ok else "unreachable"}
    if "migrations" in found:
        checks["migrations"] = "ok" if found["migrations"].ok else "behind: run `conveyor db upgrade`"
    checks["broker"] = "ok" if ext.broker_check() else "unreachable"
    down = [name for name, state in checks.items() if state != "ok"]
    if down:
        return problem(
            503,
            detail=f"Not ready: {', '.join(down)}.",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
            extensions={"checks": checks},
        )
    if "clock" in found:
        checks["clock"] = "ok" if found["clock"].ok else "skewed from the database's: synchronise the clocks"
    beat = check_beat(ext.engine, ext.settings)
    checks["beat"] = "ok" if beat.ok else f"not ticking: {beat.detail}"
    if ext.settings.auth == "off":
        checks["auth"] = "off: every request acts as an admin without a key (CONVEYOR_AUTH=off)"
    return HealthRead(status="ok", checks=checks)
