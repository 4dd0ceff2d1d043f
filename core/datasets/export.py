"""Exports: a dataset (selected columns, filtered, sorted) streamed to a CSV, JSON Lines or Parquet file in
DATA_DIR/files, in batches, on a read-only connection (on SQLite it does not block writers)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.datasets.files import FileInfo, SpoolFile, record_file
from core.datasets.query import BadQuery, Filter, column_named, conditions, sql_column
from core.datasets.schema import ROW_COLUMN, ColumnSpec, arrow_type, table_of
from core.datasets.store import DatasetNotReady, columns_of, get_dataset, referenced_dataset
from core.db import READ_ONLY
from core.errors import ConveyorError
from core.models import Dataset, StoredFile

BATCH_ROWS = 50_000
NO_LIMIT = 1 << 62
CONTENT_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


class ExportInvalid(ConveyorError):
    slug, status, title = "validation-error", 422, "Request validation failed"


class ExportSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: uuid.UUID
    format: Literal["csv", "jsonl", "parquet"] = "csv"
    columns: list[str] | None = Field(default=None, min_length=1, max_length=1000, description="Default: all.")
    filters: list[Filter] = Field(default_factory=list, max_length=100)
    sort: list[str] = Field(default_factory=list, max_length=20, description="Column names; `-` for descending.")


def check_export(spec: ExportSpec, session: Session, tenant_id: str) -> None:
    _plan(spec, referenced_dataset(session, spec.dataset_id, tenant_id=tenant_id))


def _plan(spec: ExportSpec, dataset: Dataset) -> tuple[list[ColumnSpec], sa.Select[Any]]:
    if dataset.version == 0:
        raise DatasetNotReady(f"Dataset {dataset.id} has no data yet ({dataset.status}).")
    columns = columns_of(dataset)
    table = table_of(dataset.table_name, columns)
    try:
        chosen = [column_named(columns, name) for name in spec.columns] if spec.columns else columns
        order = [sql_column(table, column_named(columns, key.removeprefix("-"))) for key in spec.sort]
        query = sa.select(*(sql_column(table, c).label(c.name) for c in chosen))
        query = query.where(*conditions(table, columns, spec.filters))
    except BadQuery as exc:
        raise ExportInvalid(exc.detail) from None
    ordering = [c.desc() if key.startswith("-") else c.asc() for c, key in zip(order, spec.sort, strict=True)]
    return chosen, query.order_by(*ordering, table.c[ROW_COLUMN])


def run_export(
    *, engine: Engine, session: Session, spec: ExportSpec, job_id: uuid.UUID, tenant_id: str, data_dir: Path,
    progress: Callable[[int, int, str], None],
) -> tuple[StoredFile, int]:  # fmt: skip
    """Write the file, then record it in `session` (committed with the job's result; the job's tenant's file).
    Returns (file, rows)."""
    dataset = get_dataset(session, spec.dataset_id, tenant_id=tenant_id)
    chosen, query = _plan(spec, dataset)
    session.rollback()  # nothing held while the rows stream (SQLite's write lock above all)
    schema = pa.schema([pa.field(c.name, arrow_type(c)) for c in chosen])
    spooled = SpoolFile(data_dir, NO_LIMIT)
    rows = 0
    try:
        with engine.connect().execution_options(**{READ_ONLY: True}) as connection:
            total = int(connection.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one())
            result = connection.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(query)
            text = iso_schema(schema) if spec.format != "parquet" else None  # Parquet keeps its timestamp type
            writer = _writer(spec.format, spooled, text or schema)
            for partition in result.mappings().partitions():
                batch = pa.RecordBatch.from_pylist([dict(r) for r in partition], schema=schema)
                writer.write_batch(iso_timestamps(batch, text) if text else batch)
                rows += batch.num_rows
                progress(rows, total, f"{rows} of {total} rows written")
            writer.close()
        spooled.close()
    except BaseException:
        spooled.discard()
        raise
    extension = "jsonl" if spec.format == "jsonl" else spec.format
    info = FileInfo(f"{_slug(dataset.name)}.{extension}", CONTENT_TYPES[spec.format])
    stored = record_file(session, spooled, info, kind="export", tenant_id=tenant_id)
    stored.dataset_id, stored.job_id = dataset.id, job_id
    session.flush()
    return stored, rows


def iso_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, pa.string()) if pa.types.is_timestamp(f.type) else f for f in schema])


def iso_timestamps(batch: pa.RecordBatch, text_schema: pa.Schema) -> pa.RecordBatch:
    """Timestamps written as the rows API writes them (pydantic's ISO 8601): `2026-11-01T08:00:00Z`, with
    `.123000` only when there is a fraction. pyarrow's CSV writer would write `2026-11-01 08:00:00.000000Z`.
    `text_schema` is iso_schema of the batch's, made once per export."""
    columns = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        if pa.types.is_timestamp(field.type):
            text = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S")  # %S carries the microseconds
            text = pc.replace_substring_regex(text, pattern=r"\.0+$", replacement="")
            column = pc.binary_join_element_wise(text, pa.scalar("Z"), "")
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=text_schema)


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name).strip("-")[:100] or "export"


class JsonLinesWriter:
    """The JSON Lines counterpart of pyarrow's CSV and Parquet writers (write_batch, close)."""

    def __init__(self, sink: SpoolFile) -> None:
        self.sink = sink

    def write_batch(self, batch: pa.RecordBatch) -> None:
        lines = "".join(json.dumps(row, default=str, ensure_ascii=False) + "\n" for row in batch.to_pylist())
        self.sink.write(lines.encode())

    def close(self) -> None:
        """Nothing to finish: every line is complete."""


def _writer(format: str, sink: SpoolFile, schema: pa.Schema) -> Any:
    if format == "csv":
        return pacsv.CSVWriter(sink, schema)
    if format == "parquet":
        import pyarrow.parquet as pq  # only when asked for: libparquet costs 12 MB (see formats._parquet_file)

        return pq.ParquetWriter(sink, schema)
    return JsonLinesWriter(sink)
