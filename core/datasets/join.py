"""`dataset_join`: an inner or left join of two datasets on named keys, in SQL, into a new dataset.

Output columns: the left's (all, or those named), then the right's (all but a key of the same name as its left key,
or those named); a right column whose name the output has already gets the right's `suffix`. Keys compare as SQL
does: numbers of any type with each other, other types with their own; a null key matches nothing."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from core.datasets.derived import check_output_name, read_inputs, write_derived
from core.datasets.query import NUMERIC, BadQuery, column_named
from core.datasets.schema import ROW_COLUMN, ColumnSpec, table_of, with_sql_names
from core.datasets.store import columns_of, referenced_dataset
from core.errors import ConveyorError
from core.models import Dataset


class JoinInvalid(ConveyorError):
    slug, status, title = "validation-error", 422, "Request validation failed"


class JoinSide(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset_id: uuid.UUID
    columns: list[str] | None = Field(default=None, max_length=1000, description="Columns to keep (default all).")
    suffix: str = Field(default="_right", max_length=50, description="Right side: added to a name already taken.")


class JoinKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    left: str
    right: str


class JoinSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    left: JoinSide
    right: JoinSide
    on: list[str | JoinKey] = Field(
        min_length=1, max_length=20, description='Keys: a column both sides name alike, or {"left": …, "right": …}.'
    )
    how: Literal["inner", "left"] = "inner"
    name: str | None = Field(default=None, max_length=200, description="Name of the output dataset.")


def check_join(spec: JoinSpec, session: Session, tenant_id: str) -> None:
    """Refuse at submit what cannot run: unknown datasets or columns, keys of types that do not compare, output
    columns of one name, an output name the tenant has given another dataset."""
    left = referenced_dataset(session, spec.left.dataset_id, tenant_id=tenant_id, field="payload.left.dataset_id")
    right = referenced_dataset(session, spec.right.dataset_id, tenant_id=tenant_id, field="payload.right.dataset_id")
    for side, dataset in (("left", left), ("right", right)):
        if dataset.version == 0:
            raise JoinInvalid(f"The {side} dataset {dataset.id} has no data yet ({dataset.status}).")
    _plan(spec, left, right)
    check_output_name(session, spec.name, tenant_id=tenant_id)


def _plan(spec: JoinSpec, left: Dataset, right: Dataset) -> tuple[sa.Select[Any], list[ColumnSpec]]:
    left_columns, right_columns = columns_of(left), columns_of(right)
    # aliased: a dataset may be joined with itself
    left_table = table_of(left.table_name, left_columns).alias("l")
    right_table = table_of(right.table_name, right_columns).alias("r")
    try:
        pairs = [(k, k) if isinstance(k, str) else (k.left, k.right) for k in spec.on]
        keys = [(column_named(left_columns, a), column_named(right_columns, b)) for a, b in pairs]
        kept_left = [column_named(left_columns, n) for n in spec.left.columns] if spec.left.columns else left_columns
        if spec.right.columns is not None:
            kept_right = [column_named(right_columns, n) for n in spec.right.columns]
        else:  # a key named as its left key would only repeat it
            kept_right = [c for c in right_columns if not any(r is c and r.name == lk.name for lk, r in keys)]
    except BadQuery as exc:
        raise JoinInvalid(exc.detail) from None
    for left_key, right_key in keys:
        comparable = left_key.type == right_key.type or {left_key.type, right_key.type} <= set(NUMERIC)
        if not comparable:
            raise JoinInvalid(f"The keys {left_key.name!r} ({left_key.type}) and {right_key.name!r} "
                              f"({right_key.type}) do not compare; join on columns of one type.")  # fmt: skip
    names = {c.name for c in kept_left}
    output, values = [], []
    for column in kept_left:
        output.append(_out(column, column.name, nullable=column.nullable))
        values.append(left_table.c[column.column or column.name])
    for column in kept_right:
        name = column.name if column.name not in names else f"{column.name}{spec.right.suffix}"
        names.add(name)
        output.append(_out(column, name, nullable=column.nullable or spec.how == "left"))
        values.append(right_table.c[column.column or column.name])
    try:
        output = with_sql_names(output)
    except ConveyorError as exc:
        raise JoinInvalid(f"{exc.detail} Choose the columns (`left.columns`, `right.columns`) or another "
                          "`right.suffix`.") from None  # fmt: skip
    condition = sa.and_(*(left_table.c[lk.column or lk.name] == right_table.c[rk.column or rk.name]
                          for lk, rk in keys))  # fmt: skip
    joined = left_table.join(right_table, condition, isouter=spec.how == "left")
    row_number = sa.func.row_number().over(order_by=(left_table.c[ROW_COLUMN], right_table.c[ROW_COLUMN]))
    return sa.select(row_number, *values).select_from(joined), output


def _out(column: ColumnSpec, name: str, *, nullable: bool) -> ColumnSpec:
    return column.model_copy(update={"name": name, "column": None, "null_values": None, "nullable": nullable})


def run_join(session: Session, spec: JoinSpec, *, job_id: uuid.UUID, tenant_id: str) -> Dataset:
    """The output dataset, filled by one INSERT … SELECT … JOIN in the caller's transaction."""
    left, right = read_inputs(session, [spec.left.dataset_id, spec.right.dataset_id], tenant_id=tenant_id)
    query, output = _plan(spec, left, right)
    inputs = [left] if left.id == right.id else [left, right]
    return write_derived(session, query=query, columns=output, name=spec.name,
                         default_name=f"{left.name} join {right.name}", operation="join", inputs=inputs,
                         job_id=job_id, tenant_id=tenant_id)  # fmt: skip
