"""`dataset_export`: a dataset (columns, filters, sort) to a CSV, JSON Lines or Parquet file; GET /v1/files/{id}."""

from __future__ import annotations

import uuid

from pydantic import BaseModel

from core.context import JobContext
from core.datasets.export import ExportSpec, check_export, run_export
from core.db import TRANSIENT_ERRORS
from core.registry import JobSpec


class ExportResult(BaseModel):
    file_id: uuid.UUID
    url: str
    rows: int
    size: int
    sha256: str


def run(payload: ExportSpec, ctx: JobContext) -> ExportResult:
    stored, rows = run_export(engine=ctx.engine, session=ctx.session, spec=payload, job_id=ctx.job_id,
                              tenant_id=ctx.tenant_id, data_dir=ctx.data_dir, progress=ctx.progress)  # fmt: skip
    return ExportResult(file_id=stored.id, url=f"/v1/files/{stored.id}", rows=rows, size=stored.size,
                        sha256=stored.sha256)  # fmt: skip


spec = JobSpec(
    name="dataset_export",
    payload=ExportSpec,
    result=ExportResult,
    handler=run,
    description="Streams a dataset (optionally some columns, filtered, sorted) to a CSV, JSON Lines or Parquet file; "
    "download it from the result's url.",
    check=check_export,
    max_attempts=3,
    retry_on=TRANSIENT_ERRORS,
    time_limit=6 * 3600,
)
