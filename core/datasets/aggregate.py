"""Aggregates pushed down to SQL: group by columns (and a time bucket), metrics, filters; the output is a new
dataset. Every column is looked up in the schema; every value is a bound parameter."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from core.datasets.derived import check_output_name, read_inputs, write_derived
from core.datasets.query import NUMERIC, Filter, column_named, conditions, sql_column
from core.datasets.schema import ColumnSpec, sql_type, table_of, with_sql_names
from core.datasets.store import columns_of, referenced_dataset
from core.errors import ConveyorError
from core.models import Dataset

MetricOp = Literal["count", "count_distinct", "sum", "avg", "min", "max"]
BucketUnit = Literal["hour", "day", "week", "month"]
SQLITE_BUCKETS = {  # SQLite stores timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' text
    "hour": ("%Y-%m-%d %H:00:00.000000",),
    "day": ("%Y-%m-%d 00:00:00.000000",),
    "week": ("%Y-%m-%d 00:00:00.000000", "weekday 0", "-6 days"),  # the Monday of the week
    "month": ("%Y-%m-01 00:00:00.000000",),
}


class AggregateInvalid(ConveyorError):
    slug, status, title = "validation-error", 422, "Request validation failed"


class Metric(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    op: MetricOp
    column: str | None = Field(default=None, description="Required except for count.")
    name: str | None = Field(default=None, max_length=200, description="Output column name (default op_column).")

    @model_validator(mode="after")
    def _needs_column(self) -> Metric:
        if self.op != "count" and self.column is None:
            raise ValueError(f"{self.op} needs a column")
        return self

    @property
    def output_name(self) -> str:
        return self.name or (self.op if self.column is None else f"{self.op}_{self.column}")


class TimeBucket(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str
    unit: BucketUnit
    name: str | None = Field(default=None, max_length=200, description="Output column name (default column_unit).")

    @property
    def output_name(self) -> str:
        return self.name or f"{self.column}_{self.unit}"


class AggregateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: uuid.UUID
    group_by: list[str] = Field(default_factory=list, max_length=50)
    metrics: list[Metric] = Field(min_length=1, max_length=100)
    filters: list[Filter] = Field(default_factory=list, max_length=100)
    time_bucket: TimeBucket | None = None
    name: str | None = Field(default=None, max_length=200, description="Name of the output dataset.")


def check_aggregate(spec: AggregateSpec, session: Session, tenant_id: str) -> None:
    """Refuse at submit what cannot run: unknown dataset or columns, sum/avg of text, a bucket on a non-timestamp,
    an output name the tenant has given another dataset."""
    _plan(spec, referenced_dataset(session, spec.dataset_id, tenant_id=tenant_id))
    check_output_name(session, spec.name, tenant_id=tenant_id)


def _plan(spec: AggregateSpec, dataset: Dataset) -> tuple[list[ColumnSpec], list[ColumnSpec], Any]:
    """(input columns, output columns, the bucket's input column) — or the reason it cannot run."""
    if dataset.version == 0:
        raise AggregateInvalid(f"Dataset {dataset.id} has no data yet ({dataset.status}).")
    columns = columns_of(dataset)
    try:
        grouped = [column_named(columns, name) for name in spec.group_by]
        output = [ColumnSpec(name=c.name, type=c.type, precision=c.precision, scale=c.scale) for c in grouped]
        bucket = None
        if spec.time_bucket is not None:
            bucket = column_named(columns, spec.time_bucket.column)
            if bucket.type not in ("timestamp", "date"):
                raise AggregateInvalid(
                    f"time_bucket needs a timestamp or date column; {bucket.name!r} is {bucket.type}."
                )
            output.append(ColumnSpec(name=spec.time_bucket.output_name, type="timestamp"))
        for metric in spec.metrics:
            output.append(
                _metric_column(metric, None if metric.column is None else column_named(columns, metric.column))
            )
        conditions(table_of(dataset.table_name, columns), columns, spec.filters)  # names and values
    except ConveyorError as exc:
        raise AggregateInvalid(exc.detail) from None
    try:
        output = with_sql_names(output)
    except ConveyorError as exc:
        raise AggregateInvalid(f"{exc.detail} Name the metrics (`name`) so that output columns differ.") from None
    return columns, output, bucket


def _metric_column(metric: Metric, source: ColumnSpec | None) -> ColumnSpec:
    name = metric.output_name
    if metric.op in ("count", "count_distinct"):
        return ColumnSpec(name=name, type="integer")
    assert source is not None  # noqa: S101 - the model requires a column for these ops
    if metric.op in ("sum", "avg") and source.type not in NUMERIC:
        raise AggregateInvalid(f"{metric.op} needs a numeric column; {source.name!r} is {source.type}.")
    if metric.op == "avg":
        return ColumnSpec(name=name, type="float")
    if metric.op == "sum" and source.type == "decimal":
        return ColumnSpec(name=name, type="decimal", precision=38, scale=source.scale)
    return ColumnSpec(name=name, type=source.type, precision=source.precision, scale=source.scale)


def run_aggregate(session: Session, spec: AggregateSpec, *, job_id: uuid.UUID, tenant_id: str) -> Dataset:
    """Create the output dataset (the job's tenant's) and fill it with one INSERT … SELECT … GROUP BY, in the
    caller's transaction."""
    [source] = read_inputs(session, [spec.dataset_id], tenant_id=tenant_id)
    columns, output, bucket_column = _plan(spec, source)
    table = table_of(source.table_name, columns)
    dialect = session.get_bind().dialect.name
    keys: list[Any] = [sql_column(table, column_named(columns, name)) for name in spec.group_by]
    if spec.time_bucket is not None:
        keys.append(_bucket(sql_column(table, bucket_column), spec.time_bucket.unit, dialect))
    values = [
        *keys,
        *(_metric(table, columns, m, out) for m, out in zip(spec.metrics, output[len(keys) :], strict=True)),
    ]
    row_number = sa.func.row_number().over(order_by=keys or None)
    query = sa.select(row_number, *values).where(*conditions(table, columns, spec.filters))  # checked by _plan
    if keys:
        query = query.group_by(*keys)
    return write_derived(session, query=query, columns=output, name=spec.name, default_name=f"{source.name} aggregate",
                         operation="aggregate", inputs=[source], job_id=job_id, tenant_id=tenant_id,
                         source={"aggregate_of": str(source.id)})  # fmt: skip


def _bucket(column: Any, unit: str, dialect: str) -> Any:
    if dialect == "postgresql":  # truncate in UTC whatever the session's zone, then back to timestamptz
        return sa.func.timezone("UTC", sa.func.date_trunc(unit, sa.func.timezone("UTC", column)))
    format_, *modifiers = SQLITE_BUCKETS[unit]
    return sa.func.strftime(format_, column, *modifiers)


def _metric(table: sa.Table, columns: list[ColumnSpec], metric: Metric, output: ColumnSpec) -> Any:
    if metric.op == "count":
        return (
            sa.func.count()
            if metric.column is None
            else sa.func.count(sql_column(table, column_named(columns, metric.column)))
        )
    source = sql_column(table, column_named(columns, metric.column or ""))
    match metric.op:
        case "count_distinct":
            return sa.func.count(sa.distinct(source))
        case "sum":
            return sa.cast(sa.func.sum(source), sql_type(output))
        case "avg":
            return sa.cast(sa.func.avg(source), sa.Float(precision=53))
        case "min":
            return sa.func.min(source)
    return sa.func.max(source)
