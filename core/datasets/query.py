"""Filters shared by rows, aggregates and exports: a column named by the user is looked up in the dataset's schema,
its value bound as the column's type. No user text ever becomes SQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from core.datasets.schema import ColumnSpec
from core.errors import ConveyorError

FilterOp = Literal["eq", "ne", "lt", "le", "gt", "ge", "contains", "is_null", "not_null"]
FILTER_OPS = FilterOp.__args__  # type: ignore[attr-defined]
NUMERIC = ("integer", "float", "decimal")


class BadQuery(ConveyorError):
    slug, status, title = "bad-query", 400, "Invalid filter or sort"


class Filter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str
    op: FilterOp
    value: Any = None


def column_named(columns: list[ColumnSpec], name: str) -> ColumnSpec:
    for column in columns:
        if column.name == name:
            return column
    raise BadQuery(f"No column {name!r}; the columns are: {', '.join(c.name for c in columns)}.")


def sql_column(table: sa.Table, column: ColumnSpec) -> sa.Column[Any]:
    return table.c[column.column or column.name]


def parse_filter(text: str) -> Filter:
    """`column:op:value` (the value may contain colons) or `column:is_null` (a query-string filter)."""
    column, _, rest = text.partition(":")
    op, has_value, value = rest.partition(":")
    if op not in FILTER_OPS or not column:
        raise BadQuery(f"Filter {text!r}: use column:op:value with op one of {', '.join(FILTER_OPS)}.")
    if op not in ("is_null", "not_null") and not has_value:
        raise BadQuery(f"Filter {text!r} needs a value: column:{op}:value.")
    return Filter(column=column, op=op, value=value if has_value else None)


def conditions(table: sa.Table, columns: list[ColumnSpec], filters: list[Filter]) -> list[sa.ColumnElement[bool]]:
    return [condition(table, column_named(columns, f.column), f) for f in filters]


def condition(table: sa.Table, column: ColumnSpec, row_filter: Filter) -> sa.ColumnElement[bool]:
    target = sql_column(table, column)
    if row_filter.op == "is_null":
        return target.is_(None)
    if row_filter.op == "not_null":
        return target.is_not(None)
    if row_filter.value is None:
        raise BadQuery(f"The {row_filter.op} filter on {column.name!r} needs a value.")
    if row_filter.op == "contains":
        if column.type != "string":
            raise BadQuery(f"contains applies to text columns; {column.name!r} is {column.type}.")
        return target.contains(str(row_filter.value), autoescape=True)
    value = typed_value(column, row_filter.value)
    compared: dict[str, sa.ColumnElement[bool]] = {
        "eq": target == value,
        "ne": target != value,
        "lt": target < value,
        "le": target <= value,
        "gt": target > value,
        "ge": target >= value,
    }
    return compared[row_filter.op]


def typed_value(column: ColumnSpec, raw: Any) -> Any:
    """A filter value as the column's Python type (then a bound parameter, never spliced into SQL)."""
    text = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)
    try:
        match column.type:
            case "integer":
                number = int(text)
                if not -(2**63) <= number < 2**63:
                    raise ValueError(text)  # beyond BIGINT: no stored value can equal or exceed it this way
                return number
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
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
                return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return text
    except (ValueError, InvalidOperation):
        raise BadQuery(f"{text!r} is not a valid {column.type} for column {column.name!r}.") from None
