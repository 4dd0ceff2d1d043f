"""Datasets made from other datasets in SQL (aggregate, join, query): the inputs are read under a share lock, so the
versions recorded are the versions read, and the output is one INSERT … SELECT into a new dataset whose first
version records its lineage: the job that made it and the datasets and versions it read."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.datasets.schema import ROW_COLUMN, ColumnSpec, table_of
from core.datasets.store import DatasetNameTaken, DatasetNotReady, dataset_named, free_name, get_dataset, new_dataset
from core.models import Dataset, DatasetVersion
from core.types import utcnow


def read_inputs(session: Session, dataset_ids: Sequence[uuid.UUID], *, tenant_id: str) -> list[Dataset]:
    """The job's input datasets, the job's tenant's only (looked up again: the check at submit is not enough), with
    data, each row share-locked until the job commits: an ingest's swap waits, so what is read is the version
    recorded (PostgreSQL; SQLite's single writer and snapshot give the same)."""
    query = sa.select(Dataset).where(Dataset.id.in_(set(dataset_ids)), Dataset.tenant_id == tenant_id)
    query = query.with_for_update(read=True).execution_options(populate_existing=True)
    locked = {d.id: d for d in session.scalars(query)}
    for dataset_id in dataset_ids:
        if dataset_id not in locked:  # missing, or another tenant's: the same DatasetNotFound
            get_dataset(session, dataset_id, tenant_id=tenant_id)
    datasets = [locked[dataset_id] for dataset_id in dataset_ids]
    for dataset in datasets:
        if dataset.version == 0:
            raise DatasetNotReady(f"Dataset {dataset.id} ({dataset.name!r}) has no data yet ({dataset.status}).")
    return datasets


def check_output_name(session: Session, name: str | None, *, tenant_id: str) -> None:
    if name is not None and (taken := dataset_named(session, name, tenant_id=tenant_id)) is not None:
        raise DatasetNameTaken.of(taken)


def write_derived(
    session: Session, *, query: sa.Select[Any], columns: list[ColumnSpec], name: str | None, default_name: str,
    operation: str, inputs: list[Dataset], job_id: uuid.UUID, tenant_id: str, source: dict[str, Any] | None = None,
) -> Dataset:  # fmt: skip
    """A new ready dataset (version 1) holding `query`'s rows; `query` selects `_row` then each of `columns`."""
    output_name = name or free_name(session, default_name[:190], tenant_id=tenant_id)
    result = new_dataset(session, name=output_name, columns=columns, tenant_id=tenant_id)
    session.flush()
    target = table_of(result.table_name, columns)
    target.create(session.connection())
    session.execute(sa.insert(target).from_select([ROW_COLUMN, *(c.column or c.name for c in columns)], query))
    rows = int(session.execute(sa.select(sa.func.count()).select_from(target)).scalar_one())
    read = [{"dataset_id": str(d.id), "name": d.name, "version": d.version} for d in inputs]
    origin = {"operation": operation, "job_id": str(job_id), **(source or {})}
    now = utcnow()
    result.status, result.row_count, result.version, result.last_job_id = "ready", rows, 1, job_id
    result.source, result.schema_inferred, result.updated_at = origin, False, now
    session.add(DatasetVersion(dataset_id=result.id, version=1, mode="replace", job_id=job_id, rows_loaded=rows,
                               rows_rejected=0, row_count=rows, source=origin, inputs=read,
                               created_at=now))  # fmt: skip
    session.flush()
    return result
