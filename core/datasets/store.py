"""Datasets as the API sees them: create, list, read (with versions), rows (filtered, sorted, paged), rejects,
delete. Every column a request names is looked up in the dataset's schema; values are bound parameters."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.datasets.files import path_of
from core.datasets.query import Filter, column_named, conditions, sql_column
from core.datasets.schema import ROW_COLUMN, ColumnSpec, table_of
from core.errors import ConveyorError, PayloadInvalid
from core.models import Dataset, DatasetReject, DatasetVersion, StoredFile
from core.types import utcnow


class DatasetNotFound(ConveyorError):
    slug, status, title = "not-found", 404, "Not found"


class DatasetNotReady(ConveyorError):
    slug, status, title = "dataset-not-ready", 409, "The dataset has no data yet"


class DatasetNameTaken(ConveyorError):
    slug, status, title = "dataset-name-taken", 409, "A dataset with this name exists"

    @classmethod
    def of(cls, existing: Dataset) -> DatasetNameTaken:
        return cls(f"The tenant has a dataset named {existing.name!r} already ({existing.id}): load into it with POST "
                   f"/v1/datasets/{existing.id}/ingest, or choose another name.",
                   extensions={"dataset_id": str(existing.id)})  # fmt: skip


def new_dataset(
    session: Session, *, name: str, columns: list[ColumnSpec] | None, tenant_id: str = "default"
) -> Dataset:
    """A pending dataset, flushed. Names are unique per tenant (the unique index decides, two creates at once
    included): a taken one raises DatasetNameTaken naming the dataset that has it."""
    dataset_id = uuid.uuid4()
    now = utcnow()
    dataset = Dataset(
        id=dataset_id, tenant_id=tenant_id, name=name, status="pending", table_name=f"ds_{dataset_id.hex[:24]}",
        columns=[c.model_dump(exclude_none=True) for c in columns] if columns else None,
        schema_inferred=columns is None, row_count=0, reject_count=0, version=0, created_at=now, updated_at=now,
    )  # fmt: skip
    try:
        with session.begin_nested():  # added inside it: the savepoint's rollback takes the refused row away too
            session.add(dataset)
            session.flush()
    except IntegrityError:  # uq_datasets_tenant_name
        taken = dataset_named(session, name, tenant_id=tenant_id)
        raise DatasetNameTaken.of(taken) if taken is not None else DatasetNameTaken(f"{name!r} is taken.") from None
    return dataset


def free_name(session: Session, base: str, *, tenant_id: str) -> str:
    """`base`, or else the first of `base (2)`, `base (3)`, … that no dataset of the tenant has."""
    similar = sa.select(Dataset.name).where(
        Dataset.tenant_id == tenant_id, Dataset.name.startswith(base, autoescape=True)
    )
    taken = set(session.scalars(similar))
    number = 2
    name = base
    while name in taken:
        name, number = f"{base} ({number})", number + 1
    return name


def dataset_named(session: Session, name: str, *, tenant_id: str) -> Dataset | None:
    return session.scalars(sa.select(Dataset).where(Dataset.tenant_id == tenant_id, Dataset.name == name)).first()


def get_dataset(session: Session, dataset_id: uuid.UUID, *, tenant_id: str = "default") -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.tenant_id != tenant_id:
        raise DatasetNotFound(f"No dataset with id {dataset_id}.")
    return dataset


def referenced_dataset(
    session: Session, dataset_id: uuid.UUID, *, tenant_id: str, field: str = "payload.dataset_id"
) -> Dataset:
    """The dataset a job's payload names, at submit: one that is missing or another tenant's is the same 422."""
    try:
        return get_dataset(session, dataset_id, tenant_id=tenant_id)
    except DatasetNotFound:
        raise PayloadInvalid(
            f"The payload names dataset {dataset_id}, which does not exist (GET /v1/datasets lists yours).",
            errors=[{"field": field, "message": "no such dataset"}],
        ) from None


def list_datasets(session: Session, *, limit: int, offset: int, tenant_id: str = "default") -> list[Dataset]:
    query = sa.select(Dataset).where(Dataset.tenant_id == tenant_id)
    return list(session.scalars(query.order_by(Dataset.created_at.desc(), Dataset.id).limit(limit).offset(offset)))


def versions_of(session: Session, dataset_id: uuid.UUID) -> list[DatasetVersion]:
    query = sa.select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id).order_by(DatasetVersion.version)
    return list(session.scalars(query))


def columns_of(dataset: Dataset) -> list[ColumnSpec]:
    return [ColumnSpec.model_validate(c) for c in dataset.columns or []]


def read_rows(
    session: Session, dataset: Dataset, *, limit: int, offset: int, filters: list[Filter], sort: list[str]
) -> list[dict[str, Any]]:
    """A page of rows as {column name: value}, in `_row` order unless sorted."""
    if dataset.version == 0:
        raise DatasetNotReady(f"Dataset {dataset.id} is {dataset.status}; it has rows once an ingest succeeded.")
    columns = columns_of(dataset)
    table = table_of(dataset.table_name, columns)
    query = sa.select(*(sql_column(table, c).label(c.name) for c in columns)).where(
        *conditions(table, columns, filters)
    )
    order = []
    for key in sort:
        column = sql_column(table, column_named(columns, key.removeprefix("-")))
        order.append(column.desc().nulls_last() if key.startswith("-") else column.asc().nulls_first())
    query = query.order_by(*order, table.c[ROW_COLUMN]).limit(limit).offset(offset)
    return [dict(row._mapping) for row in session.execute(query)]


def list_rejects(session: Session, dataset: Dataset, *, limit: int, offset: int) -> list[DatasetReject]:
    query = sa.select(DatasetReject).where(DatasetReject.dataset_id == dataset.id)
    return list(session.scalars(query.order_by(DatasetReject.line, DatasetReject.id).limit(limit).offset(offset)))


def delete_dataset(session: Session, dataset: Dataset, data_dir: Path) -> list[Path]:
    """Drop its table and rows (versions and rejects cascade). Returns the files to unlink after commit."""
    session.execute(sa.text(f'DROP TABLE IF EXISTS "{dataset.table_name}"'))  # table_name: ds_<hex>, ours
    files = list(session.scalars(sa.select(StoredFile).where(StoredFile.dataset_id == dataset.id)))
    paths = [path_of(data_dir, f) for f in files]
    for stored in files:
        session.delete(stored)
    session.delete(dataset)
    session.flush()
    return paths
