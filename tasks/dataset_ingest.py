"""`dataset_ingest`: load an uploaded file, or one fetched from a URL, into its dataset (core/datasets/ingest.py)."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from core.context import JobCancelled, JobContext
from core.datasets.evolution import SchemaMode
from core.datasets.fetch import fetch_file
from core.datasets.files import SpoolFile, path_of, record_file
from core.datasets.formats import FileOptions, Format
from core.datasets.ingest import ingest_file
from core.datasets.load import COPY_CONNECTION_ERRORS
from core.datasets.store import referenced_dataset
from core.db import TRANSIENT_ERRORS
from core.errors import PayloadInvalid
from core.models import Dataset, StoredFile
from core.outbound import URL_LIMIT, Guard, SourceUnavailable, UrlRefused
from core.quotas import check_dataset_bytes
from core.registry import JobSpec
from core.types import utcnow


class IngestPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: uuid.UUID
    file_id: uuid.UUID | None = Field(default=None, description="An uploaded file (or give `url`).")
    url: str | None = Field(
        default=None, max_length=URL_LIMIT, description="An http(s) URL the worker fetches the file from."
    )
    format: Format = "csv"
    options: FileOptions = Field(default_factory=FileOptions)
    mode: Literal["replace", "append"] = "replace"
    schema_mode: SchemaMode = Field(
        default="evolve", description="Into a dataset with data: evolve (new columns are added) or strict (refused)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> IngestPayload:
        if (self.file_id is None) == (self.url is None):
            raise ValueError("give either file_id (an uploaded file) or url (a file to fetch)")
        return self


class IngestResult(BaseModel):
    dataset_id: uuid.UUID
    version: int
    rows_loaded: int
    rows_rejected: int
    row_count: int
    schema_changes: list[dict[str, Any]] = Field(
        default_factory=list, description="Columns widened as the file was read: {column, from, to, line, value}."
    )


def check(payload: IngestPayload, session: Session, tenant_id: str) -> StoredFile | None:
    """The dataset and the file must be the tenant's (at submit, and again when the job runs); a URL must be one
    a request may use (where it resolves is checked when it is fetched)."""
    referenced_dataset(session, payload.dataset_id, tenant_id=tenant_id)
    if payload.url is not None:
        try:
            Guard().target(payload.url)
        except UrlRefused as exc:
            raise PayloadInvalid(exc.detail, errors=[{"field": "payload.url", "message": exc.detail}]) from None
        return None
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
    fetched: SpoolFile | None = None
    try:
        if stored is None:
            fetched, stored = _fetch(payload, ctx)
        source = {"file_id": str(stored.id), "filename": stored.filename, "size": stored.size,
                  "sha256": stored.sha256, "format": payload.format}  # fmt: skip
        if payload.url is not None:
            source["url"] = payload.url
        outcome = ingest_file(
            engine=ctx.engine, session=ctx.session, dataset_id=payload.dataset_id, job_id=ctx.job_id,
            path=path_of(ctx.data_dir, stored), format=payload.format, options=payload.options, mode=payload.mode,
            source=source, progress=ctx.progress, schema_mode=payload.schema_mode,
        )  # fmt: skip
    except BaseException as exc:
        if fetched is not None:  # its row goes with the job's transaction: the file goes too
            fetched.discard()
        if isinstance(exc, Exception) and not isinstance(exc, JobCancelled):
            _record_failure(ctx, payload.dataset_id, exc)
        raise
    return IngestResult(dataset_id=payload.dataset_id, version=outcome.version, rows_loaded=outcome.rows_loaded,
                        rows_rejected=outcome.rows_rejected, row_count=outcome.row_count,
                        schema_changes=outcome.schema_changes)  # fmt: skip


def _fetch(payload: IngestPayload, ctx: JobContext) -> tuple[SpoolFile, StoredFile]:
    """The URL's file, downloaded through the SSRF guard and recorded in the job's transaction (kept with its
    result, gone with a failure). The tenant's storage quota counts it as an upload's."""
    assert payload.url is not None  # noqa: S101 - the payload has file_id or url
    url = payload.url

    def progress(done: int, total: int) -> None:
        ctx.progress(0, total or done, f"downloading: {done / 1e6:.1f} MB of {url}")

    spooled, info = fetch_file(url, ctx.settings, progress)
    try:
        with Session(ctx.engine) as session:  # not the job's: on SQLite that would hold the write lock from now on
            check_dataset_bytes(session, ctx.tenant_id, spooled.size, ctx.settings.quota_dataset_bytes)
        stored = record_file(ctx.session, spooled, info, kind="upload", tenant_id=ctx.tenant_id)  # flushed at the swap
        stored.dataset_id = payload.dataset_id
    except BaseException:
        spooled.discard()
        raise
    return spooled, stored


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
    description="Loads an uploaded (or fetched) CSV, TSV, JSON Lines, Parquet or Excel file into a dataset "
    "(POST /v1/datasets and POST /v1/datasets:fetch submit it).",
    queue="default",
    max_attempts=3,
    # the database or the URL's server went away; a bad file (or URL) never retries
    retry_on=(*TRANSIENT_ERRORS, *COPY_CONNECTION_ERRORS, SourceUnavailable),
    retry_backoff=5.0,
    time_limit=6 * 3600,
)
