"""Typing a batch: every value checked against its column, vectorised in Arrow; a row with a bad value is rejected
with its line, column and reason, and the rest of the batch goes on. While an inferred schema is being loaded, a
value the sample did not foresee widens its column instead when that loses nothing (integer → float,
date → timestamp)."""

from __future__ import annotations

import array
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from core.datasets.formats import RawBatch, Reject
from core.datasets.nulls import nulled
from core.datasets.schema import ColumnSpec, ColumnType, arrow_schema, arrow_type

# Cheap shape checks before the exact cast (which then only has to find the rare value that still fails).
SHAPES = {
    "integer": r"^[+-]?\d+$",
    "float": r"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|(?i:nan|inf|infinity))$",
    "decimal": r"^[+-]?(\d+\.?\d*|\.\d+)$",
    "date": r"^\d{4}-\d{2}-\d{2}$",
    "timestamp": r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$",
    "boolean": r"^(true|false|t|f|1|0|yes|no|y|n)$",
}
EXPECTED = {
    "integer": "an integer",
    "float": "a number",
    "decimal": "a decimal number",
    "date": "a date (YYYY-MM-DD)",
    "timestamp": "a timestamp (ISO 8601)",
    "boolean": "a boolean (true/false)",
    "string": "text",
}
ZONE = r"[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}(:?\d{2})?)$"  # Z, +00 (PostgreSQL), +0530
TRUE = r"^(true|t|1|yes|y)$"
NAN_MARKERS = frozenset({"NaN", "nan", "-NaN", "-nan"})  # they cast to a float NaN: read as null when markers
# The lossless widenings: every value of the narrower type is exactly a value of the wider one.
WIDER: dict[ColumnType, ColumnType] = {"integer": "float", "date": "timestamp"}


@dataclass(frozen=True)
class Widening:
    """A column's type changed mid-ingest: the first value that needed it, and where."""

    column: str
    old: ColumnType
    new: ColumnType
    line: int
    value: str

    def as_dict(self) -> dict[str, object]:
        return {"column": self.column, "from": self.old, "to": self.new, "line": self.line, "value": self.value}


@dataclass
class TypedBatch:
    data: pa.RecordBatch  # the accepted rows: `_row` then the columns under their SQL names, typed (arrow_schema)
    rejects: list[Reject]
    columns: list[ColumnSpec]  # the columns it was typed to: the ones given, unless some widened
    widened: list[Widening] = field(default_factory=list)


def type_batch(raw: RawBatch, columns: list[ColumnSpec], first_row: int, *, widen: bool = False) -> TypedBatch:
    """Cast every column of `raw` to its type (its null markers read as null); rows with any bad value go to
    rejects (the first bad value is the reason). `first_row` numbers the accepted rows (`_row`). With `widen`, a
    column whose bad values fit its wider type (WIDER) takes that type instead, and only what fits neither is
    rejected."""
    rows = raw.data.num_rows
    bad: pa.Array | None = None
    typed: list[pa.Array] = []
    rejects = list(raw.rejects)
    reasons: dict[int, Reject] = {}
    columns = list(columns)
    widened: list[Widening] = []
    for position, column in enumerate(columns):
        markers = [m for m in column.null_values or () if m not in raw.nulls]
        result, failed, values = cast_column(_column(raw.data, column.name, rows), column, markers)
        if widen and failed is not None and column.type in WIDER and pc.any(failed).as_py():
            wider = column.model_copy(update={"type": WIDER[column.type]})
            wide_result, wide_failed, _values = cast_column(values, wider)
            fits = pc.and_(failed, pc.invert(wide_failed)) if wide_failed is not None else failed
            if pc.any(fits).as_py():
                first = pc.indices_nonzero(fits)[0].as_py()
                widened.append(
                    Widening(column.name, column.type, wider.type, raw.lines[first], str(values[first])[:200])
                )
                columns[position] = column = wider
                result, failed = wide_result, wide_failed
        typed.append(result)
        if failed is not None and pc.any(failed).as_py():
            for index in pc.indices_nonzero(failed).to_pylist():
                if index not in reasons:
                    text = values[index].as_py()
                    reason = _reason(column, text)
                    reasons[index] = Reject(raw.lines[index], column.name, None if text is None else str(text)[:1000],
                                            reason)  # fmt: skip
            bad = failed if bad is None else pc.or_(bad, failed)
    if bad is not None:  # some rows refused: keep the others
        keep = pc.invert(bad)
        typed = [pc.filter(a, keep) for a in typed]
    row_ids = _sequence(first_row, rows - len(reasons))
    data = pa.RecordBatch.from_arrays([row_ids, *typed], schema=arrow_schema(columns))
    rejects += [reasons[i] for i in sorted(reasons)]
    return TypedBatch(data, rejects, columns, widened)


def _sequence(first: int, count: int) -> pa.Array:
    """first, first + 1, … as int64, from a buffer: `pa.array` of a list or range (like any conversion of Python
    objects, `pa.scalar` too) makes pyarrow import pandas when it is installed, 55 MB more for the ingest."""
    numbers = array.array("q", range(first, first + count))
    return pa.Array.from_buffers(pa.int64(), count, [None, pa.py_buffer(numbers)])


def _column(batch: pa.RecordBatch, name: str, rows: int) -> pa.Array:
    index = batch.schema.get_field_index(name)
    return batch.column(index) if index >= 0 else pa.nulls(rows, pa.string())


def _reason(column: ColumnSpec, value: object) -> str:
    if value is None:
        return "empty, but the column is not nullable"
    if column.type == "string":
        return "contains a NUL character"
    if column.type == "decimal":
        return f"not {EXPECTED['decimal']} with at most {column.precision} digits, {column.scale} after the point"
    return f"not {EXPECTED[column.type]}"


def cast_column(
    values: pa.Array, column: ColumnSpec, markers: Sequence[str] = ()
) -> tuple[pa.Array, pa.Array | None, pa.Array]:
    """(typed values, which rows failed, the values with `markers` read as null) for one column. Text is trimmed,
    shape-checked, then cast exactly. A batch without markers is cast in one go; the markers are only looked for
    when that cast fails (a float column's NaN, which casts, is read as null when NaN is a marker)."""
    target = arrow_type(column)
    if column.type == "string":
        values = nulled(values, markers)
        result: pa.Array = values.cast(pa.string())
        # PostgreSQL text cannot hold NUL: such a value is refused here, not by the database mid-ingest.
        result = pc.if_else(pc.match_substring(result, "\x00"), pa.nulls(len(result), pa.string()), result)
    elif values.type == target:
        result = values
    elif pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        fast = _fast_cast(values, column, target)
        if fast is None and markers:
            values = nulled(values, markers)
            fast = _fast_cast(values, column, target)
        if fast is None:  # some value is off (or padded, or spelled differently): check each one
            fast = _cast_text(values, column, target)
        result = fast
        if column.type == "float" and NAN_MARKERS.intersection(markers) and pc.any(pc.is_nan(result)).as_py():
            nan = pc.is_nan(result)
            result = pc.if_else(nan, pa.nulls(len(result), result.type), result)
            values = pc.if_else(nan, pa.nulls(len(values), values.type), values)
    else:
        result = cast_or_null(values, target)  # a typed source (Parquet): cast what can be cast
    failed = pc.and_(pc.is_null(result), pc.is_valid(values)) if result is not values else None
    if not column.nullable:
        empty = pc.is_null(values)
        failed = empty if failed is None else pc.or_(failed, empty)
    return result, failed, values


def _fast_cast(values: pa.Array, column: ColumnSpec, target: pa.DataType) -> pa.Array | None:
    """The common case, a whole batch of clean values, in one cast; None if any value needs a closer look."""
    if column.type == "decimal":  # a scale to check; booleans' plain cast takes true/false (any case) and 1/0
        return None
    try:
        if column.type == "timestamp":
            return pc.cast(values, pa.timestamp("us")).cast(target)  # no offset: read as UTC
        return pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _cast_text(values: pa.Array, column: ColumnSpec, target: pa.DataType) -> pa.Array:
    text = pc.utf8_trim_whitespace(values)
    if column.type == "boolean":
        text = pc.utf8_lower(text)
    shaped = pc.if_else(pc.match_substring_regex(text, SHAPES[column.type]), text, pa.nulls(len(text), pa.string()))
    if column.type == "boolean":
        return pc.if_else(pc.is_null(shaped), pa.nulls(len(text), pa.bool_()), pc.match_substring_regex(shaped, TRUE))
    if column.type == "timestamp":
        zoned = pc.match_substring_regex(shaped, ZONE)
        none = pa.nulls(len(text), pa.string())
        local = cast_or_null(pc.if_else(zoned, none, shaped), pa.timestamp("us")).cast(target)  # read as UTC
        return pc.coalesce(local, cast_or_null(pc.if_else(zoned, shaped, none), target))
    return cast_or_null(shaped, target)


def cast_or_null(values: pa.Array, target: pa.DataType) -> pa.Array:
    """Cast exactly; values that do not cast become null. The whole array is tried first, then halves of a
    failing one, so a rare bad value costs O(log n) casts instead of a Python loop over the batch."""
    try:
        return pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(values) <= 1:
            return pa.nulls(len(values), target)
        middle = len(values) // 2
        return pa.concat_arrays([cast_or_null(values.slice(0, middle), target),
                                 cast_or_null(values.slice(middle), target)])  # fmt: skip
