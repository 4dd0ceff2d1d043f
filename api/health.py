"""/healthz (the process answers) and /readyz (database and broker reachable)."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from sqlalchemy import text

from api.extension import conveyor, db
from api.problems import RETRY_AFTER_SECONDS, problem
from api.schemas import HealthRead

bp = APIBlueprint("health", __name__, tag="Health")


@bp.get("/healthz")
@bp.output(HealthRead)
@bp.doc(summary="Liveness: the API process answers")
def healthz() -> Any:
    return HealthRead(status="ok")


@bp.get("/readyz")
@bp.output(HealthRead)
@bp.doc(summary="Readiness: the database and the broker answer", responses={503: "A dependency is down"})
def readyz() -> Any:
    checks = {"database": "ok", "broker": "ok"}
    try:
        db().execute(text("SELECT 1"))
        db().rollback()
    except Exception:
        checks["database"] = "unreachable"
    if not conveyor().broker_check():
        checks["broker"] = "unreachable"
    down = [name for name, state in checks.items() if state != "ok"]
    if down:
        return problem(
            503,
            detail=f"Not ready: {', '.join(down)} unreachable.",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    if conveyor().settings.auth == "off":
        checks["auth"] = "off: every request acts as an admin without a key (CONVEYOR_AUTH=off)"
    return HealthRead(status="ok", checks=checks)
