"""`dataset_query`: select, derive and filter a dataset's columns in SQL into a new dataset, with the expressions of
core/datasets/expressions.py. Rows keep their order."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from core.datasets.derived import check_output_name, read_inputs, write_derived
from core.datasets.expressions import Compiler, ExpressionInvalid
from core.datasets.schema import ROW_COLUMN, ColumnSpec, table_of, with_sql_names
from core.datasets.store import columns_of, referenced_dataset
from core.errors import ConveyorError
from core.models import Dataset


class DerivedColumn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, description="The output column's name.")
    expr: str = Field(
        max_length=2000,
        description="An expression over the columns, e.g. `dep_delay / 60`, `coalesce(fare, 0) * 1.1`, "
        "`lower(origin)`, `year(dep_time)`, `'late' if dep_delay > 15 else 'on time'`.",
    )


class QuerySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: uuid.UUID
    select: list[str | DerivedColumn] | None = Field(
        default=None,
        max_length=500,
        description="Output columns in order: a column's name (kept as is) or {name, expr}; default every column.",
    )
    where: str | None = Field(
        default=None, max_length=2000, description="Keep the rows where this is true: `origin == 'JFK' and fare > 50`."
    )
    name: str | None = Field(default=None, max_length=200, description="Name of the output dataset.")


def check_query(spec: QuerySpec, session: Session, tenant_id: str) -> None:
    """Refuse at submit what cannot run: an unknown dataset, column or function, an expression of the wrong type,
    two output columns of one name, an output name the tenant has given another dataset."""
    dataset = referenced_dataset(session, spec.dataset_id, tenant_id=tenant_id)
    if dataset.version == 0:
        raise ExpressionInvalid(f"Dataset {dataset.id} has no data yet ({dataset.status}).")
    _plan(spec, dataset, session.get_bind().dialect.name)
    check_output_name(session, spec.name, tenant_id=tenant_id)


def _plan(spec: QuerySpec, dataset: Dataset, dialect: str) -> tuple[sa.Select[Any], list[ColumnSpec]]:
    columns = columns_of(dataset)
    table = table_of(dataset.table_name, columns)
    compiler = Compiler(columns, lambda c: table.c[c.column or c.name], dialect)
    selected = spec.select if spec.select is not None else [c.name for c in columns]
    if not selected:
        raise ExpressionInvalid("`select` names one column at least (leave it out for every column).")
    values, output = [], []
    for index, item in enumerate(selected):
        name, expr = (item, f"col({item!r})") if isinstance(item, str) else (item.name, item.expr)
        typed = compiler.compile(expr, field=f"payload.select.{index}" + ("" if isinstance(item, str) else ".expr"))
        values.append(typed.sql)
        output.append(typed.spec(name))
    try:
        output = with_sql_names(output)
    except ConveyorError as exc:
        raise ExpressionInvalid(f"{exc.detail} Give the derived columns names of their own.") from None
    where = [] if spec.where is None else [compiler.condition(spec.where, field="payload.where")]
    row_number = sa.func.row_number().over(order_by=table.c[ROW_COLUMN])
    return sa.select(row_number, *values).where(*where), output


def run_query(session: Session, spec: QuerySpec, *, job_id: uuid.UUID, tenant_id: str) -> Dataset:
    """The output dataset, filled by one INSERT … SELECT in the caller's transaction."""
    [source] = read_inputs(session, [spec.dataset_id], tenant_id=tenant_id)
    query, output = _plan(spec, source, session.get_bind().dialect.name)
    return write_derived(session, query=query, columns=output, name=spec.name, default_name=f"{source.name} query",
                         operation="query", inputs=[source], job_id=job_id, tenant_id=tenant_id)  # fmt: skip
