"""Reading an uploaded file as a stream of Arrow batches, in constant memory, with each row's line number.

CSV and TSV go through pyarrow's streaming reader (every column read as text, typed later so that a bad value
rejects one row, not the file, and null markers are each column's own); JSON Lines through the json module line by
line; Parquet through its row groups; Excel workbooks through openpyxl (core/datasets/excel.py). A CSV, TSV or JSON
Lines file compressed with gzip or zstd (known by its first bytes, whatever its name) is read through a
decompressing stream, never unpacked to disk.
"""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import BaseModel, ConfigDict, Field

from core.datasets.schema import ColumnSpec, ColumnType, SchemaInvalid, type_of_arrow, with_sql_names
from core.errors import ConveyorError

if TYPE_CHECKING:
    import pyarrow.parquet as pq

# One CSV block (~1,700 rows of 8 columns). Arrow's reader reads a dozen or more blocks ahead in the background, so
# the block sets the ingest's memory: 1 MiB blocks held ~30 MB; 128 KiB ones keep a 1M-row ingest under 150 MB peak
# RSS at the same speed (the per-batch work is vectorised).
BLOCK_BYTES = 1 << 17
JSONL_ROWS = 20_000
# What names the columns: a CSV file's header (and one block, to refuse a file that cannot be read), the keys of the
# objects in a JSON Lines file's first MiB.
NAMES_BYTES = {"csv": BLOCK_BYTES, "tsv": BLOCK_BYTES, "jsonl": 1 << 20, "xlsx": 1 << 20}
Format = Literal["csv", "tsv", "jsonl", "parquet", "xlsx"]
FORMATS: tuple[Format, ...] = ("csv", "tsv", "jsonl", "parquet", "xlsx")
DELIMITED = ("csv", "tsv")
MAGIC = ((b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"))  # a compressed file's first bytes


class FileUnreadable(ConveyorError):
    slug, status, title = "file-unreadable", 422, "The file cannot be read"


class ColumnsMissing(ConveyorError):
    slug, status, title = "validation-error", 422, "Request validation failed"


class FileOptions(BaseModel):
    """How to read the file (the `options` of an upload)."""

    model_config = ConfigDict(extra="forbid")

    delimiter: str | None = Field(default=None, min_length=1, max_length=1, description="Default `,` (a tab for tsv).")
    quote_char: str = Field(default='"', min_length=1, max_length=1)
    header: bool = Field(default=True, description="The first line names the columns (else column_1, column_2, …).")
    encoding: str = Field(default="utf-8", max_length=40, description="Any Python codec name, e.g. latin-1.")
    null_values: list[str] | None = Field(
        default=None,
        max_length=100,
        description="Read as null in every column. Unset: each column's own (see the schema's `null_values`): `NA`, "
        "`N/A`, `NaN`, `NULL`, `#N/A`, `\\N`, empty and the other markers pandas and Arrow read as null in numeric, "
        "boolean, date and timestamp columns; only empty and `\\N` in CSV text columns.",
    )
    max_rejects: int = Field(default=1000, ge=0, description="More rejected rows than this fails the ingest.")
    sheet: str | int | None = Field(
        default=None, description="xlsx: the sheet to read, by name or by position from 0 (default: the first)."
    )

    def for_format(self, format: Format) -> FileOptions:
        """These options with the format's defaults filled in (a TSV file's tab)."""
        if self.delimiter is not None:
            return self
        return self.model_copy(update={"delimiter": "\t" if format == "tsv" else ","})

    def check_encoding(self) -> None:
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise FileUnreadable(f"Unknown encoding {self.encoding!r}; e.g. utf-8, latin-1, cp1252.") from None


@dataclass
class Reject:
    line: int
    column: str | None
    value: str | None
    reason: str


@dataclass
class RawBatch:
    """Rows as read: text columns (CSV, JSON Lines) or typed ones (Parquet), keyed by the file's column names."""

    data: pa.RecordBatch
    lines: list[int] | range  # the line of each row, the header being line 1
    rejects: list[Reject] = field(default_factory=list)  # rows refused before typing (ragged, not JSON, …)
    bytes_read: int = 0
    nulls: frozenset[str] = frozenset()  # the markers the reader has read as null already


def read_batches(path: Path, format: Format, options: FileOptions, nulls: frozenset[str]) -> Iterator[RawBatch]:
    """The file's rows in batches. A CSV reader reads `nulls` (the markers every column has) as null as it parses;
    the typing reads each column's others."""
    if format in DELIMITED:
        return _csv_batches(path, options.for_format(format), nulls)
    if format == "jsonl":
        return _jsonl_batches(path, options)
    if format == "xlsx":
        from core.datasets.excel import xlsx_batches  # openpyxl is loaded for workbooks only

        return xlsx_batches(path, options)
    return _parquet_batches(path)


def compression_of(path: Path) -> str | None:
    """gzip or zstd if the file starts as one does, else None."""
    with open(path, "rb") as file:
        start = file.read(4)
    return next((codec for magic, codec in MAGIC if start.startswith(magic)), None)


@contextmanager
def opened(path: Path) -> Iterator[tuple[BinaryIO, CountingReader]]:
    """The file's content (decompressed if it is compressed) and the counter of the file's bytes read so far."""
    with open(path, "rb") as raw:
        counted = CountingReader(raw)
        codec = compression_of(path)
        if codec is None:
            yield io.BufferedReader(counted), counted
            return
        stream = pa.CompressedInputStream(pa.PythonFile(counted, mode="r"), codec)
        try:
            yield stream, counted
        finally:
            stream.close()


def check_file(path: Path, format: Format, options: FileOptions, columns: list[ColumnSpec] | None) -> None:
    """Refuse what an ingest of this file would fail on: an empty or unreadable start, a column without a name, a
    column `columns` declares that the file does not have (its header, the keys of its first objects, its Parquet
    schema)."""
    if format == "parquet":
        present = _parquet_file(path).schema_arrow.names
    else:
        present = read_head(path, format, options, max_bytes=NAMES_BYTES[format]).column_names
    named_columns([(name, "string") for name in present])
    missing = [c.name for c in columns or [] if c.name not in present]
    if missing:
        detail = f"The file has no column {', '.join(missing)} (it has: {', '.join(present)})."
        raise ColumnsMissing(detail, errors=[{"field": "schema", "message": f"not in the file: {', '.join(missing)}"}])


def read_head(path: Path, format: Format, options: FileOptions, *, max_bytes: int) -> pa.Table:
    """The file's first rows (about `max_bytes` of them, all of a smaller file) as text columns under the file's
    names; an empty or unreadable start is refused."""
    if format == "xlsx":
        from core.datasets.excel import xlsx_head

        return xlsx_head(path, options, max_rows=max_bytes // 64)
    options = options.for_format(format)
    if format == "jsonl":
        rows = [obj for _line, _position, obj in _jsonl_objects(path, options, max_bytes=max_bytes)
                if isinstance(obj, dict)]  # fmt: skip
        if not rows:
            raise FileUnreadable("The file has no JSON objects, one per line.")
        return text_table(rows, list(dict.fromkeys(k for row in rows for k in row)))
    names = file_columns_csv(path, options)
    batches: list[pa.RecordBatch] = []
    with opened(path) as (stream, _counted):
        reader = _open_csv(stream, options, text_columns=names, on_invalid=lambda _row: "skip")
        try:
            while not batches or sum(b.nbytes for b in batches) < max_bytes:
                batches.append(_renamed(reader.read_next_batch(), names))
        except StopIteration:
            pass
        except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as exc:
            raise FileUnreadable(_csv_error(exc, options)) from None
        finally:
            reader.close()
    if sum(b.num_rows for b in batches) == 0:
        raise FileUnreadable("The file has a header but no rows." if options.header else "The file has no rows.")
    return pa.Table.from_batches(batches)


def text_table(rows: list[dict[str, Any]], names: list[str]) -> pa.Table:
    """JSON objects as text columns (`names`), the way the ingest reads them."""
    return pa.table({n: pa.array([_as_text(row.get(n)) for row in rows], pa.string()) for n in names})


def named_columns(types: list[tuple[str, ColumnType]]) -> list[ColumnSpec]:
    """The file's columns with their types and SQL names; a column without a name is refused, not guessed."""
    for index, (name, _type) in enumerate(types):
        if not name.strip():
            raise SchemaInvalid(f"Column {index + 1} of the file has no name: name it in the file, or upload with "
                                "options.header=false (columns are then column_1, column_2, …).")  # fmt: skip
    return with_sql_names([ColumnSpec(name=name, type=type) for name, type in types])


def parquet_columns(path: Path) -> list[ColumnSpec]:
    return named_columns([(f.name, type_of_arrow(f.type)) for f in _parquet_file(path).schema_arrow])


# --- CSV ------------------------------------------------------------------------------------------------------------


class CountingReader(io.RawIOBase):
    """A binary file that counts the bytes read from it: the ingest's progress in bytes."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        read = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        self.count += read or 0
        return int(read or 0)


def _open_csv(
    source: BinaryIO, options: FileOptions, *, text_columns: list[str] | None, block_size: int | None = None,
    on_invalid: Any = None, nulls: frozenset[str] = frozenset(),
) -> pacsv.CSVStreamingReader:  # fmt: skip
    options.check_encoding()
    read = pacsv.ReadOptions(
        block_size=block_size or BLOCK_BYTES,
        use_threads=False,  # in order, so that refused rows carry their line numbers
        encoding=options.encoding,
        autogenerate_column_names=not options.header,
    )
    try:
        stream = source if isinstance(source, pa.NativeFile) else pa.PythonFile(source, mode="r")
        return pacsv.open_csv(stream, read_options=read, parse_options=csv_parse_options(options, on_invalid),
                              convert_options=csv_text_options(text_columns, nulls))  # fmt: skip
    except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as exc:  # OSError: a damaged compressed stream
        raise FileUnreadable(_csv_error(exc, options)) from None


def csv_parse_options(options: FileOptions, on_invalid: Any) -> pacsv.ParseOptions:
    return pacsv.ParseOptions(
        delimiter=options.delimiter or ",",
        quote_char=options.quote_char,
        newlines_in_values=True,
        ignore_empty_lines=True,
        invalid_row_handler=on_invalid,
    )


def csv_text_options(text_columns: list[str] | None, nulls: frozenset[str] = frozenset()) -> pacsv.ConvertOptions:
    """Every value as text, as it is written, except `nulls`, read as null (quoted or not, as pandas and Arrow do)."""
    return pacsv.ConvertOptions(
        null_values=sorted(nulls),
        strings_can_be_null=bool(nulls),
        column_types=dict.fromkeys(text_columns, pa.string()) if text_columns else None,
    )


def _csv_error(exc: Exception, options: FileOptions) -> str:
    message = str(exc)
    if "UTF8" in message or "UTF-8" in message or isinstance(exc, UnicodeDecodeError):
        return f"The file is not valid {options.encoding}: set options.encoding (e.g. latin-1) and upload it again."
    if "Empty CSV file" in message:
        return "The file is empty."
    if any(word in message.lower() for word in ("inflate", "zstd", "gzip", "compressed stream")):
        return f"The compressed file is damaged or cut short ({message}): upload it again."
    return f"The CSV cannot be parsed: {message}"


def _csv_batches(path: Path, options: FileOptions, nulls: frozenset[str]) -> Iterator[RawBatch]:
    names = file_columns_csv(path, options)
    refused: list[Reject] = []

    def on_invalid(row: Any) -> str:
        refused.append(Reject(row.number or 0, None, row.text[:1000],
                              f"has {row.actual_columns} fields, the header has {row.expected_columns}"))  # fmt: skip
        return "skip"

    next_line = 2 if options.header else 1
    skipped: set[int] = set()
    with opened(path) as (stream, counted):
        reader = _open_csv(stream, options, text_columns=names, on_invalid=on_invalid, nulls=nulls)
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowInvalid, UnicodeDecodeError, OSError) as exc:
                raise FileUnreadable(f"Near line {next_line}: {_csv_error(exc, options)}") from None
            skipped.update(r.line for r in refused)
            lines, next_line = _number_rows(next_line, batch.num_rows, skipped)
            yield RawBatch(_renamed(batch, names), lines, refused.copy(), bytes_read=counted.count, nulls=nulls)
            refused.clear()


def file_columns_csv(path: Path, options: FileOptions) -> list[str]:
    with opened(path) as (stream, _counted):
        reader = _open_csv(stream, options, text_columns=None, block_size=1 << 16, on_invalid=lambda _row: "skip")
        try:
            return _csv_names(reader.schema.names, options)
        except UnicodeDecodeError as exc:  # a header that is not in the encoding
            raise FileUnreadable(_csv_error(exc, options)) from None
        finally:
            reader.close()


def _csv_names(names: list[str], options: FileOptions) -> list[str]:
    """The header's names, or column_1, column_2, … for a file without one (Arrow's own are f0, f1, …)."""
    return list(names) if options.header else [f"column_{i + 1}" for i in range(len(names))]


def _renamed(batch: pa.RecordBatch, names: list[str]) -> pa.RecordBatch:
    return batch if batch.schema.names == names else batch.rename_columns(names)


def _number_rows(first: int, rows: int, refused: set[int]) -> tuple[list[int] | range, int]:
    """The lines of `rows` accepted rows counted from `first`, stepping over refused lines (which the reader may
    report a block ahead, so they are kept until passed). Returns the lines and the next line."""
    if not refused or min(refused) >= first + rows + len(refused):
        return range(first, first + rows), first + rows
    lines: list[int] = []
    line = first
    while len(lines) < rows:
        if line in refused:
            refused.discard(line)
        else:
            lines.append(line)
        line += 1
    return lines, line


# --- JSON Lines ---------------------------------------------------------------------------------------------------


def _jsonl_objects(path: Path, options: FileOptions, max_bytes: int | None = None) -> Iterator[tuple[int, int, Any]]:
    """(line number, the file's bytes read so far, the parsed value or the parse error) per non-blank line; with
    `max_bytes`, the lines in about that much of the content."""
    options.check_encoding()
    content = 0
    with opened(path) as (stream, counted):
        for number, raw in enumerate(_lines_of(stream, options), start=1):
            if max_bytes is not None and content >= max_bytes:
                return
            content += len(raw)
            position = counted.count
            try:
                text = raw.decode(options.encoding)
            except UnicodeDecodeError:
                raise FileUnreadable(
                    f"Line {number} is not valid {options.encoding}: set options.encoding and upload it again."
                ) from None
            if not text.strip():
                continue
            try:
                yield number, position, json.loads(text)
            except ValueError as exc:
                yield number, position, exc


def _lines_of(stream: BinaryIO, options: FileOptions) -> Iterator[bytes]:
    lines = (
        io.BufferedReader(stream) if isinstance(stream, pa.NativeFile) else stream
    )  # Arrow's streams read, not by line
    try:
        yield from lines
    except OSError as exc:  # a compressed stream that is damaged or cut short
        raise FileUnreadable(_csv_error(exc, options)) from None


def _jsonl_batches(path: Path, options: FileOptions) -> Iterator[RawBatch]:
    names = read_head(path, "jsonl", options, max_bytes=NAMES_BYTES["jsonl"]).column_names
    columns: dict[str, list[str | None]] = {n: [] for n in names}
    lines: list[int] = []
    refused: list[Reject] = []

    position = 0

    def flush() -> RawBatch:
        batch = pa.RecordBatch.from_pydict({n: pa.array(v, pa.string()) for n, v in columns.items()})
        raw = RawBatch(batch, lines.copy(), refused.copy(), bytes_read=position)
        for values in columns.values():
            values.clear()
        lines.clear()
        refused.clear()
        return raw

    for number, position, obj in _jsonl_objects(path, options):  # noqa: B007 - flush() reads position
        if not isinstance(obj, dict):
            reason = f"not JSON: {obj}" if isinstance(obj, Exception) else "not a JSON object"
            refused.append(Reject(number, None, None, reason))
            continue
        for name in names:
            columns[name].append(_as_text(obj.get(name)))
        lines.append(number)
        if len(lines) >= JSONL_ROWS:
            yield flush()
    if lines or refused:
        yield flush()


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


# --- Parquet ------------------------------------------------------------------------------------------------------


def _parquet_file(path: Path) -> pq.ParquetFile:
    import pyarrow.parquet as pq  # here, not at the top: loading libparquet costs 12 MB, CSV ingests need none of it

    if compression_of(path) is not None:
        raise FileUnreadable("A compressed Parquet file: upload it as it is (Parquet compresses its own pages).")
    try:
        return pq.ParquetFile(str(path))
    except (pa.ArrowInvalid, OSError) as exc:
        raise FileUnreadable(f"Not a Parquet file: {exc}") from None


def _parquet_batches(path: Path) -> Iterator[RawBatch]:
    file = _parquet_file(path)
    first = 1
    for batch in file.iter_batches(batch_size=65_536):
        yield RawBatch(batch, range(first, first + batch.num_rows))
        first += batch.num_rows
