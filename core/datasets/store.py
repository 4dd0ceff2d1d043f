"""Datasets as the API sees them: create, list, read (with versions), rows (filtered, sorted, paged), rejects,
delete. Every column a request names is looked up in the dataset's schema; values are bound parameters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.datasets.files import path_of
from core.datasets.schema import ROW_COLUMN, ColumnSpec, table_of
from core.errors import ConveyorError
from core.models import Dataset, DatasetReject, DatasetVersion, StoredFile
from core.types import utcnow

OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "contains", "is_null", "not_null")


class DatasetNotFound(ConveyorError):
    slug, status, title = "not-found", 404, "Not found"


class DatasetNotReady(ConveyorError):
    slug, status, title = "dataset-not-ready", 409, "The dataset has no data yet"


class BadQuery(ConveyorError):
    slug, status, title = "bad-query", 400, "Invalid filter or sort"


def new_dataset(
    session: Session, *, name: str, columns: list[ColumnSpec] | None, tenant_id: str = "default"
) -> Dataset:
    dataset_id = uuid.uuid4()
    now = utcnow()
    dataset = Dataset(
        id=dataset_id, tenant_id=tenant_id, name=name, status="pending", table_name=f"ds_{dataset_id.hex[:24]}",
        columns=[c.model_dump(exclude_none=True) for c in columns] if columns else None,
        schema_inferred=columns is None, row_count=0, reject_count=0, version=0, created_at=now, updated_at=now,
    )  # fmt: skip
    session.add(dataset)
    return dataset


def get_dataset(session: Session, dataset_id: uuid.UUID, *, tenant_id: str = "default") -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.tenant_id != tenant_id:
        raise DatasetNotFound(f"No dataset with id {dataset_id}.")
    return dataset


def list_datasets(session: Session, *, limit: int, offset: int, tenant_id: str = "default") -> list[Dataset]:
    query = sa.select(Dataset).where(Dataset.tenant_id == tenant_id)
    return list(session.scalars(query.order_by(Dataset.created_at.desc(), Dataset.id).limit(limit).offset(offset)))


def versions_of(session: Session, dataset_id: uuid.UUID) -> list[DatasetVersion]:
    query = sa.select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id).order_by(DatasetVersion.version)
    return list(session.scalars(query))


def columns_of(dataset: Dataset) -> list[ColumnSpec]:
    return [ColumnSpec.model_validate(c) for c in dataset.columns or []]


@dataclass(frozen=True)
class RowFilter:
    column: str
    op: str
    value: str | None = None


def parse_filter(text: str) -> RowFilter:
    """`column:op:value` (the value may contain colons) or `column:is_null`."""
    column, _, rest = text.partition(":")
    op, _, value = rest.partition(":")
    if op not in OPERATORS or not column:
        raise BadQuery(f"Filter {text!r}: use column:op:value with op one of {', '.join(OPERATORS)}.")
    if op not in ("is_null", "not_null") and not _:
        raise BadQuery(f"Filter {text!r} needs a value: column:{op}:value.")
    return RowFilter(column, op, value if op not in ("is_null", "not_null") else None)


def read_rows(
    session: Session, dataset: Dataset, *, limit: int, offset: int, filters: list[RowFilter], sort: list[str]
) -> list[dict[str, Any]]:
    """A page of rows as {column name: value}, in `_row` order unless sorted."""
    if dataset.version == 0:
        raise DatasetNotReady(f"Dataset {dataset.id} is {dataset.status}; it has rows once an ingest succeeded.")
    columns = columns_of(dataset)
    by_name = {c.name: c for c in columns}
    table = table_of(dataset.table_name, columns)
    query = sa.select(*(table.c[c.column or c.name].label(c.name) for c in columns))
    for row_filter in filters:
        query = query.where(_condition(table, _known(by_name, row_filter.column), row_filter))
    order = []
    for key in sort:
        name = key.removeprefix("-")
        column = table.c[_known(by_name, name).column or name]
        order.append(column.desc().nulls_last() if key.startswith("-") else column.asc().nulls_first())
    query = query.order_by(*order, table.c[ROW_COLUMN]).limit(limit).offset(offset)
    return [dict(row._mapping) for row in session.execute(query)]


def _known(by_name: dict[str, ColumnSpec], name: str) -> ColumnSpec:
    if name not in by_name:
        raise BadQuery(f"No column {name!r}; the columns are: {', '.join(by_name)}.")
    return by_name[name]


def _condition(table: sa.Table, column: ColumnSpec, row_filter: RowFilter) -> sa.ColumnElement[bool]:
    sql_column = table.c[column.column or column.name]
    if row_filter.op == "is_null":
        return sql_column.is_(None)
    if row_filter.op == "not_null":
        return sql_column.is_not(None)
    if row_filter.op == "contains":
        if column.type != "string":
            raise BadQuery(f"contains applies to text columns; {column.name!r} is {column.type}.")
        return sql_column.contains(row_filter.value or "", autoescape=True)
    value = typed_value(column, row_filter.value or "")
    conditions: dict[str, sa.ColumnElement[bool]] = {
        "eq": sql_column == value,
        "ne": sql_column != value,
        "lt": sql_column < value,
        "le": sql_column <= value,
        "gt": sql_column > value,
        "ge": sql_column >= value,
    }
    return conditions[row_filter.op]


def typed_value(column: ColumnSpec, text: str) -> Any:
    """A filter value as the column's Python type (a bound parameter, never spliced into SQL)."""
    try:
        match column.type:
            case "integer":
                return int(text)
            case "float":
                return float(text)
            case "decimal":
                return Decimal(text)
            case "boolean":
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(text)
                return text.lower() in ("true", "1")
            case "date":
                return date.fromisoformat(text)
            case "timestamp":
                return datetime.fromisoformat(text.replace("Z", "+00:00"))
        return text
    except (ValueError, InvalidOperation):
        raise BadQuery(f"{text!r} is not a valid {column.type} for column {column.name!r}.") from None


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
