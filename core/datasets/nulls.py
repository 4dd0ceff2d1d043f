"""Which values read as null, per column: the markers real tools write, unless the upload or the schema says.

R writes a missing value as `NA`, pandas as an empty field (or `NaN` once it is a float), Excel as `#N/A`, and
PostgreSQL's and MySQL's text exports as `\\N`. A numeric, boolean, date or timestamp column reads them all as null;
a text column keeps them as text (a country code `NA` stays "NA") and reads only an empty field and `\\N` as null.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from core.datasets.schema import ColumnSpec, ColumnType

# pandas' and Arrow's default null strings, and `\N`.
NULL_MARKERS: tuple[str, ...] = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
    "NULL", "NaN", "None", "n/a", "nan", "null", "\\N",
)  # fmt: skip
TEXT_NULL_MARKERS: tuple[str, ...] = ("", "\\N")


def default_markers(column_type: ColumnType, format: str) -> list[str]:
    """The markers a column reads as null when neither the upload nor the schema names them. Parquet has real nulls
    and typed values, so none; JSON Lines and Excel have real nulls, so a text value is always text."""
    if format == "parquet":
        return []
    if column_type != "string":
        return list(NULL_MARKERS)
    return list(TEXT_NULL_MARKERS) if format in ("csv", "tsv") else []


def with_null_values(columns: list[ColumnSpec], format: str, null_values: list[str] | None) -> list[ColumnSpec]:
    """Each column with the markers this ingest applies: the upload's `options.null_values` if it sets them (for
    every column), else the column's own (declared, or kept from an earlier ingest), else the defaults."""
    resolved = []
    for column in columns:
        markers = null_values if null_values is not None else column.null_values
        if markers is None:
            markers = default_markers(column.type, format)
        resolved.append(column.model_copy(update={"null_values": list(markers)}))
    return resolved


def nulled(values: pa.Array, markers: Sequence[str] | None) -> pa.Array:
    """`values` with every marker read as null (text only: a typed column, e.g. from Parquet, has real nulls)."""
    if not markers or not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return values
    hit = pc.is_in(values, value_set=pa.array(markers, values.type))
    if not pc.any(hit).as_py():
        return values
    return pc.if_else(hit, pa.nulls(len(values), values.type), values)
