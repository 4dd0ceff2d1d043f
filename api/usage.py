"""/v1/usage: what the caller's tenant uses of each quota, and the limit."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from pydantic import BaseModel, Field

from api.auth import requires, tenant
from api.extension import conveyor, db
from core.quotas import active_jobs, dataset_bytes, schedules

bp = APIBlueprint("usage", __name__, url_prefix="/v1", tag="Usage")


class QuotaUsage(BaseModel):
    used: int
    limit: int | None = Field(description="None: no limit.")


class UsageRead(BaseModel):
    tenant_id: str
    active_jobs: QuotaUsage = Field(
        description="Unfinished jobs (queued, scheduled, running, retrying). Jobs that finished within the last "
        "few seconds may still count (core/quotas.py)."
    )
    schedules: QuotaUsage
    dataset_bytes: QuotaUsage = Field(description="Bytes of the tenant's uploaded and exported files.")


@bp.get("/usage")
@requires(None)
@bp.output(UsageRead)
@bp.doc(summary="The caller's tenant: its usage of each quota, and the limits (any key may read it)")
def usage() -> Any:
    session, tenant_id = db(), tenant()
    settings = conveyor().settings

    def of(used: int, limit: int) -> QuotaUsage:
        return QuotaUsage(used=used, limit=limit or None)

    return UsageRead(
        tenant_id=tenant_id,
        active_jobs=of(active_jobs(session, tenant_id), settings.quota_active_jobs),
        schedules=of(schedules(session, tenant_id), settings.quota_schedules),
        dataset_bytes=of(dataset_bytes(session, tenant_id), settings.quota_dataset_bytes),
    )
