"""`dataset_ingest`: load an uploaded file into its dataset (see core/datasets/ingest.py)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from core.context import JobCancelled, JobContext
from core.datasets.files import path_of
from core.datasets.formats import FileOptions, Format
from core.datasets.ingest import ingest_file
from core.datasets.load import COPY_CONNECTION_ERRORS
from core.datasets.store import referenced_dataset
from core.db import TRANSIENT_ERRORS
from core.errors import PayloadInvalid
from core.models import Dataset, StoredFile
from core.registry import JobSpec
from core.types import utcnow


class IngestPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: uuid.UUID
    file_id: uuid.UUID
    format: Format = "csv"
    options: FileOptions = Field(default_factory=FileOptions)
    mode: Literal["replace", "append"] = "replace"


class IngestResult(BaseModel):
    dataset_id: uuid.UUID
    version: int
    rows_loaded: int
    rows_rejected: int
    row_count: int
    schema_changes: list[dict[str, Any]] = Field(
        default_factory=list, description="Columns widened as the file was read: {column, from, to, line, value}."
    )


def check(payload: IngestPayload, session: Session, tenant_id: str) -> StoredFile:
    """The dataset and the file must be the tenant's (at submit, and again when the job runs)."""
    referenced_dataset(session, payload.dataset_id, tenant_id=tenant_id)
    stored = session.get(StoredFile, payload.file_id)
    if stored is None or stored.tenant_id != tenant_id:
        raise PayloadInvalid(
            f"The payload names file {payload.file_id}, which does not exist.",
            errors=[{"field": "payload.file_id", "message": "no such file"}],
        )
    return stored


def run(payload: IngestPayload, ctx: JobContext) -> IngestResult:
    with Session(ctx.engine, expire_on_commit=False) as session:
        stored = check(payload, session, ctx.tenant_id)  # before the try: never mark another tenant's dataset
    source = {"file_id": str(stored.id), "filename": stored.filename, "size": stored.size, "sha256": stored.sha256,
              "format": payload.format}  # fmt: skip
    try:
        outcome = ingest_file(
            engine=ctx.engine, session=ctx.session, dataset_id=payload.dataset_id, job_id=ctx.job_id,
            path=path_of(ctx.data_dir, stored), format=payload.format, options=payload.options, mode=payload.mode,
            source=source, progress=ctx.progress,
        )  # fmt: skip
    except JobCancelled:
        raise
    except Exception as exc:
        _record_failure(ctx, payload.dataset_id, exc)
        raise
    return IngestResult(dataset_id=payload.dataset_id, version=outcome.version, rows_loaded=outcome.rows_loaded,
                        rows_rejected=outcome.rows_rejected, row_count=outcome.row_count,
                        schema_changes=outcome.schema_changes)  # fmt: skip


def _record_failure(ctx: JobContext, dataset_id: uuid.UUID, exc: Exception) -> None:
    """The dataset tells why its last ingest failed; one that never loaded becomes `failed`."""
    ctx.session.rollback()
    error = {"type": type(exc).__name__, "message": str(getattr(exc, "detail", exc))[:2000], "job_id": str(ctx.job_id)}
    status = sa.case((Dataset.version == 0, "failed"), else_=Dataset.status)
    with ctx.engine.begin() as connection:
        connection.execute(
            sa.update(Dataset).where(Dataset.id == dataset_id).values(error=error, updated_at=utcnow(), status=status)
        )


spec = JobSpec(
    name="dataset_ingest",
    payload=IngestPayload,
    result=IngestResult,
    handler=run,
    check=check,
    description="Loads an uploaded CSV, JSON Lines or Parquet file into a dataset (POST /v1/datasets submits it).",
    queue="default",
    max_attempts=3,
    retry_on=(*TRANSIENT_ERRORS, *COPY_CONNECTION_ERRORS),  # the database went away; a bad file never retries
    retry_backoff=5.0,
    time_limit=6 * 3600,
)
