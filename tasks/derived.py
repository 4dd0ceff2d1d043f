"""The job types that make a dataset from others in SQL (aggregate, join, query): one shape, one result."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from core.context import JobContext
from core.db import TRANSIENT_ERRORS
from core.models import Dataset
from core.registry import JobSpec


class DerivedResult(BaseModel):
    dataset_id: uuid.UUID
    row_count: int


def derived_job_type(
    name: str, payload: type[BaseModel], make: Callable[..., Dataset], check: Callable[[Any, Session, str], None],
    description: str,
) -> JobSpec:  # fmt: skip
    """A job type whose handler calls `make(session, payload, job_id=, tenant_id=)` in the job's transaction and
    answers with the new dataset's id and row count; a lost connection is retried once."""

    def run(spec: Any, ctx: JobContext) -> DerivedResult:
        output = make(ctx.session, spec, job_id=ctx.job_id, tenant_id=ctx.tenant_id)
        return DerivedResult(dataset_id=output.id, row_count=output.row_count)

    return JobSpec(name=name, payload=payload, result=DerivedResult, handler=run, description=description,
                   check=check, max_attempts=2, retry_on=TRANSIENT_ERRORS, time_limit=6 * 3600)  # fmt: skip
