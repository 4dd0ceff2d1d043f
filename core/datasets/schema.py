"""A dataset's columns: declared (name → type, nullable) or inferred, each with a safe SQL name of its own."""

from __future__ import annotations

import re
from typing import Any, Literal

import pyarrow as pa
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import ConveyorError
from core.types import UTCDateTime

ColumnType = Literal["string", "integer", "float", "boolean", "date", "timestamp", "decimal"]
ROW_COLUMN = "_row"  # Conveyor's own column: the row's position, for stable paging
MAX_COLUMNS = 1000
SQL_NAME_LENGTH = 55  # PostgreSQL keeps 63 bytes; room for a dedup suffix


class SchemaInvalid(ConveyorError):
    slug, status, title = "schema-invalid", 422, "Invalid dataset schema"


class ColumnSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="The column's name in the file.")
    type: ColumnType = "string"
    nullable: bool = True
    precision: int | None = Field(default=None, ge=1, le=38, description="decimal only (default 18).")
    scale: int | None = Field(default=None, ge=0, le=38, description="decimal only (default 2).")
    column: str | None = Field(default=None, description="The SQL column name (set by Conveyor).")
    null_values: list[str] | None = Field(
        default=None,
        max_length=100,
        description="The values this column reads as null; an upload's `options.null_values` replace them. Unset: the "
        "markers pandas and Arrow read as null (`NA`, `N/A`, `NaN`, `NULL`, `#N/A`, `\\N`, empty, …) in numeric, "
        "boolean, date and timestamp columns, only empty and `\\N` in CSV text. Each ingest shows what it applied.",
    )

    @model_validator(mode="after")
    def _decimal_fields(self) -> ColumnSpec:
        if self.type != "decimal" and (self.precision is not None or self.scale is not None):
            raise ValueError("precision and scale apply to decimal columns only")
        if self.type == "decimal":
            self.precision = self.precision or 18
            self.scale = 2 if self.scale is None else self.scale
            if self.scale > self.precision:
                raise ValueError("scale cannot exceed precision")
        if not self.name.strip():
            raise ValueError("column names cannot be blank")
        return self


def parse_schema(raw: Any) -> list[ColumnSpec]:
    """`{"name": "type" | {"type": ..., "nullable": ...}}` or `[{"name": ..., "type": ...}]` → columns with SQL
    names. Duplicate or blank names and unknown types are refused with the offending field."""
    if isinstance(raw, dict):
        if not all(isinstance(spec, (str, dict)) for spec in raw.values()):
            raise SchemaInvalid('Each column maps to a type name or to {"type": ..., "nullable": ...}.')
        raw = [{"name": name} | ({"type": spec} if isinstance(spec, str) else spec) for name, spec in raw.items()]
    if not isinstance(raw, list) or not raw:
        raise SchemaInvalid('Give the schema as {"column": "type", ...} or [{"name": ..., "type": ...}].')
    if len(raw) > MAX_COLUMNS:
        raise SchemaInvalid(f"At most {MAX_COLUMNS} columns.")
    columns, errors = [], []
    for index, item in enumerate(raw):
        try:
            columns.append(ColumnSpec.model_validate(item))
        except ValidationError as exc:
            errors += [{"field": f"schema.{index}.{'.'.join(map(str, e['loc']))}".rstrip("."), "message": e["msg"]}
                       for e in exc.errors()]  # fmt: skip
    if errors:
        raise SchemaInvalid("The schema is invalid; see errors.", errors=errors)
    return with_sql_names(columns)


def with_sql_names(columns: list[ColumnSpec]) -> list[ColumnSpec]:
    names = [c.name for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SchemaInvalid(f"Column names must be unique; repeated: {', '.join(duplicates)}.")
    taken: set[str] = {ROW_COLUMN}
    named = []
    for column in columns:
        sql = sql_name(column.name, taken)
        taken.add(sql)
        named.append(column.model_copy(update={"column": sql}))
    return named


def sql_name(name: str, taken: set[str]) -> str:
    """A lower-case [a-z0-9_] identifier derived from `name`, unique among `taken`. It is always quoted in SQL,
    so a name like `select` or `order` is harmless; this keeps names portable and readable."""
    base = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:SQL_NAME_LENGTH] or "column"
    if base[0].isdigit():
        base = f"c_{base}"[:SQL_NAME_LENGTH]
    candidate, suffix = base, 2
    while candidate in taken:
        candidate, suffix = f"{base}_{suffix}", suffix + 1
    return candidate


def arrow_type(column: ColumnSpec) -> pa.DataType:
    match column.type:
        case "string":
            return pa.string()
        case "integer":
            return pa.int64()
        case "float":
            return pa.float64()
        case "boolean":
            return pa.bool_()
        case "date":
            return pa.date32()
        case "timestamp":
            return pa.timestamp("us", tz="UTC")
        case "decimal":
            return pa.decimal128(column.precision or 18, column.scale or 0)
    raise AssertionError(column.type)


def sql_type(column: ColumnSpec) -> sa.types.TypeEngine[Any]:
    match column.type:
        case "string":
            return sa.Text()
        case "integer":
            return sa.BigInteger()
        case "float":
            return sa.Float(precision=53)
        case "boolean":
            return sa.Boolean()
        case "date":
            return sa.Date()
        case "timestamp":
            return UTCDateTime()
        case "decimal":
            return sa.Numeric(column.precision, column.scale)
    raise AssertionError(column.type)


def type_of_arrow(data_type: pa.DataType) -> ColumnType:
    """The column type that holds an Arrow type (for inferred and derived schemas)."""
    if pa.types.is_boolean(data_type):
        return "boolean"
    if pa.types.is_integer(data_type):
        return "integer"
    if pa.types.is_floating(data_type):
        return "float"
    if pa.types.is_decimal(data_type):
        return "decimal"
    if pa.types.is_date(data_type):
        return "date"
    if pa.types.is_timestamp(data_type):
        return "timestamp"
    return "string"


def arrow_schema(columns: list[ColumnSpec]) -> pa.Schema:
    """The typed batches of an ingest: `_row`, then each column under its SQL name and Arrow type."""
    fields = [pa.field(c.column or c.name, arrow_type(c)) for c in columns]
    return pa.schema([pa.field(ROW_COLUMN, pa.int64()), *fields])


def table_of(table_name: str, columns: list[ColumnSpec], *, keyed: bool = True) -> sa.Table:
    """The dataset's table as SQLAlchemy Core: every identifier quoted by SQLAlchemy, never spliced by hand.
    `keyed=False` leaves out the primary key on `_row` (a staging table whose key is built after the load)."""
    return sa.Table(
        table_name,
        sa.MetaData(),
        sa.Column(ROW_COLUMN, sa.BigInteger(), primary_key=keyed, autoincrement=False, nullable=False),
        *(sa.Column(c.column or c.name, sql_type(c), nullable=c.nullable, quote=True) for c in columns),
    )
