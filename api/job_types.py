"""/v1/job-types: the registered job types with the JSON Schemas of their payloads and results."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint

from api.auth import requires
from api.extension import conveyor
from api.schemas import JobTypeList, JobTypeRead
from core.keys import Scope

bp = APIBlueprint("job_types", __name__, url_prefix="/v1/job-types", tag="Job types")


@bp.get("")
@requires(Scope.JOBS_READ)
@bp.output(JobTypeList)
@bp.doc(summary="List job types and their payload schemas")
def list_all() -> Any:
    return JobTypeList(
        items=[
            JobTypeRead(
                name=spec.name,
                description=spec.description,
                queue=spec.queue,
                priority=spec.priority,
                max_attempts=spec.max_attempts,
                payload_schema=spec.payload.model_json_schema(),
                result_schema=spec.result.model_json_schema(),
            )
            for spec in conveyor().registry
        ]
    )
