"""Excel workbooks (.xlsx), streamed row by row with openpyxl's read-only mode, in constant memory.

Each cell becomes the text the CSV reader would have given (a date as YYYY-MM-DD, a date and time as ISO 8601, a
whole number without `.0`, TRUE/FALSE as true/false), so the same inference, typing, null markers and rejects
apply. An empty cell is a real null. A row's line is its row number in the sheet, as Excel shows it.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pyarrow as pa

from core.datasets.formats import JSONL_ROWS, FileOptions, FileUnreadable, RawBatch, Reject

Row = tuple[Any, ...]


@contextmanager
def _sheet(path: Path, options: FileOptions) -> Iterator[Any]:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    with open(path, "rb") as file:  # a file, not its path: openpyxl would judge a path by its extension
        try:
            workbook = load_workbook(file, read_only=True, data_only=True)
        except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
            raise FileUnreadable(f"Not an Excel .xlsx workbook ({exc}); save an .xls file as .xlsx.") from None
        try:
            yield _chosen(workbook, options.sheet)
        finally:
            workbook.close()


def _chosen(workbook: Any, sheet: str | int | None) -> Any:
    names = workbook.sheetnames
    if sheet is None:
        return workbook.worksheets[0]
    if isinstance(sheet, int) and 0 <= sheet < len(names):
        return workbook.worksheets[sheet]
    if isinstance(sheet, str) and sheet in names:
        return workbook[sheet]
    raise FileUnreadable(f"The workbook has no sheet {sheet!r}; its sheets are {', '.join(map(repr, names))} "
                         "(options.sheet takes a name or a position from 0).")  # fmt: skip


def _rows(sheet: Any) -> Iterator[tuple[int, Row]]:
    """(row number, the row's values) of each row that is not empty."""
    for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
        if any(v is not None and v != "" for v in values):
            yield number, values


def _names(header: Row, options: FileOptions) -> list[str]:
    if not options.header:
        return [f"column_{i + 1}" for i in range(len(header))]
    cells = list(header)
    while cells and cells[-1] is None:  # formatted but empty columns past the table
        cells.pop()
    return ["" if v is None else cell_text(v) or "" for v in cells]


def cell_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def xlsx_batches(path: Path, options: FileOptions) -> Iterator[RawBatch]:
    total = path.stat().st_size
    with _sheet(path, options) as sheet:
        rows = _rows(sheet)
        first = next(rows, None)
        if first is None:
            return
        names = _names(first[1], options)
        last_row = sheet.max_row or 0  # from the sheet's own dimension, when it records one
        pending: list[tuple[int, Row]] = [] if options.header else [first]
        for row in rows:
            pending.append(row)
            if len(pending) >= JSONL_ROWS:
                yield _batch(pending, names, total, last_row)
                pending = []
        if pending:
            yield _batch(pending, names, total, last_row)


def _batch(rows: list[tuple[int, Row]], names: list[str], total: int, last_row: int) -> RawBatch:
    columns: list[list[str | None]] = [[] for _ in names]
    lines, refused = [], []
    width = len(names)
    for number, values in rows:
        extra = [v for v in values[width:] if v is not None]
        if extra:
            refused.append(Reject(number, None, ", ".join(map(str, extra))[:1000],
                                  f"has cells past the header's {width} columns"))  # fmt: skip
            continue
        for index in range(width):
            columns[index].append(cell_text(values[index]) if index < len(values) else None)
        lines.append(number)
    data = pa.RecordBatch.from_arrays([pa.array(c, pa.string()) for c in columns], names=names)
    done = total * rows[-1][0] // last_row if last_row else total
    return RawBatch(data, lines, refused, bytes_read=min(done, total))


def xlsx_head(path: Path, options: FileOptions, *, max_rows: int) -> pa.Table:
    """The sheet's first `max_rows` rows as text columns under the header's names."""
    with _sheet(path, options) as sheet:
        rows = _rows(sheet)
        first = next(rows, None)
        if first is None:
            raise FileUnreadable("The sheet is empty.")
        names = _names(first[1], options)
        head = [] if options.header else [first]
        for row in rows:
            head.append(row)
            if len(head) >= max_rows:
                break
    if not head:
        raise FileUnreadable("The sheet has a header but no rows.")
    return pa.Table.from_batches([_batch(head, names, 0, 0).data])
