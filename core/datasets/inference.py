"""A file's schema, inferred from a sample spread over the whole file and typed by the same casts as the ingest.

The sample is the file's first MiB and, in a file over twice that, slices read at even steps across the rest: a
column that is empty at the start, or holds decimals only later, is typed by what the file really holds. A column
takes the most specific type that all but one in a thousand of its sampled values cast to, so a stray `abc` among
5,000 integers becomes one reject with its line rather than a text column; it takes a wider type instead wherever
that fits more values and loses nothing (integer → float, date → timestamp). The ingest widens a column the same
way when it meets such a value the sample missed (core/datasets/typing.py).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.datasets.formats import (
    DELIMITED,
    FileOptions,
    Format,
    compression_of,
    csv_parse_options,
    csv_text_options,
    named_columns,
    parquet_columns,
    read_head,
    text_table,
)
from core.datasets.nulls import NULL_MARKERS, nulled
from core.datasets.schema import ColumnSpec, ColumnType
from core.datasets.typing import WIDER, cast_column

HEAD_BYTES = 1 << 20  # the file's first MiB is read whole…
SLICES = 32  # …and, in a file over twice that, this many slices at even steps across the rest
SLICE_BYTES = 1 << 15
MISFITS = 0.001  # the share of a column's sampled values that may fail its type (to be rejected with their lines)
# The most specific type first: an integer column also casts as float, and 0/1 also as boolean.
CANDIDATES: tuple[ColumnType, ...] = ("integer", "float", "boolean", "date", "timestamp")
# Text is inferred boolean only when it says true or false, or t and f as PostgreSQL writes them: a column of country
# codes holding NO, or of answers holding y and n, stays text (a declared boolean column reads yes/no, y/n and 1/0).
BOOLEAN_WORDS = r"^\s*(?i:true|false|t|f)\s*$"


def infer_columns(path: Path, format: Format, options: FileOptions) -> list[ColumnSpec]:
    """The file's columns, typed from its sample; a column without a value in it is text."""
    return named_columns([(name, type or "string") for name, type in sampled_types(path, format, options)])


def sampled_types(path: Path, format: Format, options: FileOptions) -> list[tuple[str, ColumnType | None]]:
    """Each of the file's columns and the type its sample shows (None: no value in the sample)."""
    if format == "parquet":
        return [(c.name, c.type) for c in parquet_columns(path)]
    sample = read_head(path, format, options, max_bytes=HEAD_BYTES)
    rest = _slices(path, format, options, sample.column_names)
    if rest is not None:
        sample = pa.concat_tables([sample, rest])
    markers = NULL_MARKERS if options.null_values is None else tuple(options.null_values)
    return [(name, infer_type(sample.column(name), markers)) for name in sample.column_names]


def infer_type(values: pa.Array | pa.ChunkedArray, markers: tuple[str, ...]) -> ColumnType | None:
    """The most specific type that all but MISFITS of the present values cast to (the ingest's own casts), or its
    wider type if that fits more; text if none does; None if there is no value."""
    present = pc.drop_null(nulled(_contiguous(values), markers))
    if len(present) == 0:
        return None
    tolerated = int(len(present) * MISFITS)
    for candidate in CANDIDATES:
        if _misfits(present.slice(0, 1000), candidate) > tolerated:  # plainly not this type: skip the whole sample
            continue
        misfits = _misfits(present, candidate)
        if misfits <= tolerated:
            wider = WIDER.get(candidate)
            return wider if wider is not None and _misfits(present, wider) < misfits else candidate
    return "string"


def _misfits(values: pa.Array, type: ColumnType) -> int:
    if type == "boolean" and (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return len(values) - int(pc.sum(pc.match_substring_regex(values, BOOLEAN_WORDS)).as_py() or 0)
    _result, failed, _values = cast_column(values, ColumnSpec(name="sample", type=type))
    return 0 if failed is None else int(pc.sum(failed).as_py() or 0)


def _contiguous(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _slices(path: Path, format: Format, options: FileOptions, names: list[str]) -> pa.Table | None:
    """The rows of SLICES slices of the file after its head, each cut to whole lines; None for a small file, a
    workbook or a compressed file (neither can be read from the middle), or an encoding in which a newline is not
    the byte \\n."""
    size = path.stat().st_size
    if format not in (*DELIMITED, "jsonl") or size <= 2 * HEAD_BYTES or compression_of(path) is not None:
        return None
    if codecs.encode("\n", options.encoding) != b"\n":
        return None
    options = options.for_format(format)
    step = (size - HEAD_BYTES) // SLICES
    tables = []
    with open(path, "rb") as file:
        for index in range(SLICES):
            chunk = _whole_lines(file, HEAD_BYTES + index * step)
            table = _csv_slice(chunk, options, names) if format in DELIMITED else _jsonl_slice(chunk, options, names)
            if table is not None and table.num_rows:
                tables.append(table)
    return pa.concat_tables(tables) if tables else None


def _whole_lines(file: BinaryIO, offset: int) -> bytes:
    """About SLICE_BYTES from `offset`, from the first line that starts after it to the last that ends in it."""
    file.seek(offset)
    file.readline(1 << 20)  # the rest of a line begun before the offset
    chunk: bytes = file.read(SLICE_BYTES)
    return chunk[: chunk.rfind(b"\n") + 1]


def _csv_slice(chunk: bytes, options: FileOptions, names: list[str]) -> pa.Table | None:
    """The slice's rows, or None if any does not parse to the header's fields: a slice that began inside a quoted
    value spanning lines reads as garbage, and garbage must not type a column."""
    ragged: list[Any] = []

    def on_invalid(row: Any) -> str:
        ragged.append(row)
        return "skip"

    read = pacsv.ReadOptions(column_names=names, encoding=options.encoding, use_threads=False)
    try:
        parse = csv_parse_options(options, on_invalid)
        table = pacsv.read_csv(pa.py_buffer(chunk), read_options=read, parse_options=parse,
                               convert_options=csv_text_options(names))  # fmt: skip
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    return None if ragged else table


def _jsonl_slice(chunk: bytes, options: FileOptions, names: list[str]) -> pa.Table | None:
    rows = []
    for line in _lines(chunk):
        try:
            obj = json.loads(line.decode(options.encoding))
        except (ValueError, UnicodeDecodeError):
            continue  # the ingest rejects it with its line
        if isinstance(obj, dict):
            rows.append(obj)
    return text_table(rows, names) if rows else None


def _lines(chunk: bytes) -> Iterator[bytes]:
    return (line for line in chunk.split(b"\n") if line.strip())
