"""The ingest: stream a file through typing into a staging table, then swap it in with the job's result."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.datasets.evolution import SchemaMode, evolve, plan_columns
from core.datasets.formats import FileOptions, FileUnreadable, Format, Reject, read_batches
from core.datasets.load import REJECTS, StagingLoad, discard_staging, staging_name, swap_in
from core.datasets.nulls import with_null_values
from core.datasets.schema import ColumnSpec
from core.datasets.store import columns_of
from core.datasets.typing import Widening, type_batch
from core.errors import ConveyorError
from core.models import Dataset, DatasetVersion
from core.types import utcnow

Mode = Literal["replace", "append"]
Progress = Callable[[int, int, str], None]  # (bytes done, bytes total, message)


class TooManyRejects(ConveyorError):
    slug, status, title = "too-many-rejects", 422, "Too many rejected rows"


@dataclass(frozen=True)
class IngestOutcome:
    rows_loaded: int
    rows_rejected: int
    row_count: int
    version: int
    schema_changes: list[dict[str, Any]]


def ingest_file(
    *,
    engine: Engine,
    session: Session,
    dataset_id: uuid.UUID,
    job_id: uuid.UUID,
    path: Path,
    format: Format,
    options: FileOptions,
    mode: Mode,
    source: dict[str, Any],
    progress: Progress,
    schema_mode: SchemaMode = "evolve",
) -> IngestOutcome:
    """Load `path` into the dataset. Everything before the swap happens on connections of its own; the swap and
    the dataset's new state go into `session` (the job's unit of work, committed with its result). A file loaded
    into a dataset with data may evolve its schema (core/datasets/evolution.py); an inferred schema may widen as
    the file is read. Both are recorded in the version's `schema_changes`; a declared schema never widens."""
    with engine.connect() as connection:
        dataset = connection.execute(
            sa.select(Dataset.table_name, Dataset.columns, Dataset.version, Dataset.schema_inferred).where(
                Dataset.id == dataset_id
            )
        ).one()
    stored = [ColumnSpec.model_validate(c) for c in dataset.columns] if dataset.columns else None
    inferred = dataset.schema_inferred or stored is None
    columns = plan_columns(stored, has_data=dataset.version > 0, inferred=inferred, path=path, format=format,
                           options=options, schema_mode=schema_mode)  # fmt: skip
    widen = inferred and format != "parquet"
    columns = with_null_values(columns, format, options.null_values)
    staging = staging_name(dataset.table_name, job_id)
    total = path.stat().st_size
    loaded = rejected = 0
    first_rejects: list[Reject] = []
    widened: list[Widening] = []
    with StagingLoad(engine, staging, columns, dataset_id, job_id) as load:
        shared = frozenset.intersection(*(frozenset(c.null_values or ()) for c in columns))
        for raw in read_batches(path, format, options, nulls=shared):
            typed = type_batch(raw, columns, first_row=loaded + 1, widen=widen)
            if typed.widened:
                columns = typed.columns
                load.widen(columns)
                widened += typed.widened
            load.write(typed)
            load.write_rejects(typed.rejects)
            loaded += typed.data.num_rows
            rejected += len(typed.rejects)
            first_rejects = (first_rejects + typed.rejects)[:5]
            if rejected > options.max_rejects:
                raise TooManyRejects(f"{rejected} rows rejected, more than max_rejects={options.max_rejects}; "
                                     f"first: {_describe(first_rejects)}")  # fmt: skip
            progress(raw.bytes_read or total, total, f"{loaded} rows loaded, {rejected} rejected")
        if loaded == 0:
            raise FileUnreadable(f"No row could be loaded ({rejected} rejected; first: {_describe(first_rejects)}).")
        load.finish()
    try:
        return _swap(session, dataset_id, job_id, staging, columns, mode, loaded, rejected, source, widened,
                     schema_mode)  # fmt: skip
    except BaseException:
        session.rollback()  # release the job's transaction (SQLite's write lock) before cleaning up
        with engine.connect() as connection:
            discard_staging(connection, staging, dataset_id, job_id)
            connection.commit()
        raise


def _describe(rejects: list[Reject]) -> str:
    return "; ".join(f"line {r.line}" + (f" column {r.column}" if r.column else "") + f": {r.reason}"
                     for r in rejects) or "none"  # fmt: skip


def _swap(
    session: Session, dataset_id: uuid.UUID, job_id: uuid.UUID, staging: str, columns: list[ColumnSpec], mode: Mode,
    loaded: int, rejected: int, source: dict[str, Any], widened: list[Widening], schema_mode: SchemaMode,
) -> IngestOutcome:  # fmt: skip
    """Make the staged rows the dataset's. The dataset's row is locked, and its schema now (another ingest may have
    changed it since this one began) is evolved by the staged columns, so every change is checked against it."""
    query = sa.select(Dataset).where(Dataset.id == dataset_id).with_for_update()
    dataset = session.scalars(query.execution_options(populate_existing=True)).one()
    exists = dataset.version > 0
    staged = columns
    changes: list[dict[str, Any]] = [w.as_dict() for w in widened]
    current = columns_of(dataset) if exists else None
    if current is not None:
        evolution = evolve(current, [(c.name, c.type) for c in staged], inferred=dataset.schema_inferred,
                           mode=schema_mode)  # fmt: skip
        found = {w.column: w.as_dict() for w in widened}  # where the file showed a widening, when it did
        changes = [found.get(str(change["column"]), change) for change in evolution.changes]
        markers = {c.name: c.null_values for c in staged}  # this ingest's null markers
        columns = [c.model_copy(update={"null_values": markers.get(c.name, c.null_values)}) for c in evolution.columns]
    connection = session.connection()
    swap_in(connection, table_name=dataset.table_name, staging=staging, staged=staged, columns=columns,
            current=current, mode=mode)  # fmt: skip
    # The dataset row is locked: its count plus what was staged is the table's, without scanning it.
    row_count = dataset.row_count + loaded if exists and mode == "append" else loaded
    if mode == "replace":
        connection.execute(sa.delete(REJECTS).where(REJECTS.c.dataset_id == dataset_id, REJECTS.c.job_id != job_id))
    now = utcnow()
    dataset.columns = [c.model_dump(exclude_none=True) for c in columns]
    dataset.status, dataset.error, dataset.row_count = "ready", None, row_count
    dataset.reject_count = rejected if mode == "replace" else dataset.reject_count + rejected
    dataset.version, dataset.last_job_id, dataset.source, dataset.updated_at = dataset.version + 1, job_id, source, now
    session.add(DatasetVersion(dataset_id=dataset_id, version=dataset.version, mode=mode, job_id=job_id,
                               rows_loaded=loaded, rows_rejected=rejected, row_count=row_count, source=source,
                               schema_changes=changes or None, created_at=now))  # fmt: skip
    session.flush()
    return IngestOutcome(loaded, rejected, row_count, dataset.version, changes)
