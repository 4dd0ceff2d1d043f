"""/v1/queues: job counts by status and the age of the oldest queued job, per queue."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from api.auth import requires, tenant
from api.extension import conveyor, db
from api.schemas import QueueList, QueueRead
from core.keys import Scope
from core.queries import queue_stats

bp = APIBlueprint("queues", __name__, url_prefix="/v1/queues", tag="Queues")


@bp.get("")
@requires(Scope.JOBS_READ)
@bp.output(QueueList)
@bp.doc(summary="Queue depths by status and oldest queued age")
def list_all() -> Any:
    stats = queue_stats(db(), conveyor().settings.queues, tenant_id=tenant())
    return QueueList(
        items=[
            QueueRead(name=s.name, counts=s.counts, oldest_queued_age_seconds=s.oldest_queued_age_seconds)
            for s in stats
        ]
    )
