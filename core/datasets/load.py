"""Writing typed batches: a staging table on a connection of its own (PostgreSQL `COPY`, SQLite batched inserts),
then one swap into the dataset's table in the job's own transaction, so readers see all of an ingest or none of it."""

from __future__ import annotations

import io
import queue
import threading
import uuid
from contextlib import ExitStack
from typing import Any, cast

import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from core.datasets.formats import Reject
from core.datasets.schema import ROW_COLUMN, ColumnSpec, table_of
from core.datasets.typing import TypedBatch
from core.models import DatasetReject

REJECTS = cast(sa.Table, DatasetReject.__table__)
CSV_FOR_COPY = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")  # unquoted empty = NULL


def staging_name(table_name: str, job_id: uuid.UUID) -> str:
    """Per job, so a retried attempt finds (and drops) what a killed one left behind."""
    return f"{table_name[:30]}_stg_{job_id.hex[:16]}"


class CopyStream:
    """One `COPY … FROM STDIN` fed through a small bounded queue by a thread of its own, so that Arrow reads and
    checks the next batch while PostgreSQL parses this one (both release the GIL). At most `depth` batches wait."""

    def __init__(self, driver: Any, statement: str, depth: int = 3) -> None:
        self._driver = driver
        self._statement = statement
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._abort = False
        self._thread = threading.Thread(target=self._run, name="copy-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with self._driver.cursor().copy(self._statement) as copy:
                while (chunk := self._queue.get()) is not None:
                    copy.write(chunk)
                if self._abort:
                    raise CopyAborted("ingest aborted")  # psycopg then ends the COPY with CopyFail
        except BaseException as exc:
            self._error = exc  # the producer sees it at its next put

    def _put(self, item: bytes | None) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def write(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._put(chunk)
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """End the COPY (raising what the server refused, if anything)."""
        self._put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        self._abort = True
        self._put(None)
        self._thread.join()


class CopyAborted(Exception):
    pass


class StagingLoad:
    """Loads one ingest into its staging table. PostgreSQL streams a single COPY for the whole file (the table's key
    is built after, in one pass); SQLite commits every batch, so the one writer lock is never held for a whole ingest
    (the API keeps accepting jobs)."""

    def __init__(self, engine: Engine, table: sa.Table, dataset_id: uuid.UUID, job_id: uuid.UUID) -> None:
        self.engine = engine
        self.table = table
        self.dataset_id = dataset_id
        self.job_id = job_id
        self.postgres = engine.dialect.name == "postgresql"
        self._stack = ExitStack()
        self._copy: CopyStream | None = None
        self._data: Connection | None = None
        self._side: Connection | None = None

    def __enter__(self) -> StagingLoad:
        self._data = self._stack.enter_context(self.engine.connect())
        self._side = self._stack.enter_context(self.engine.connect()) if self.postgres else self._data
        discard_staging(self._data, self.table.name, self.dataset_id, self.job_id)
        self.table.create(self._data)
        self._data.commit()
        if self.postgres:
            self._data.execute(sa.text("SET LOCAL TIME ZONE 'UTC'"))  # a timestamp without offset is UTC, as typed
            columns = ", ".join(f'"{c.name}"' for c in self.table.columns)  # names from table_of: [a-z0-9_] only
            statement = f'COPY "{self.table.name}" ({columns}) FROM STDIN WITH (FORMAT csv)'
            self._copy = CopyStream(self._data.connection.driver_connection, statement)
        return self

    def write(self, batch: TypedBatch) -> None:
        if batch.data.num_rows == 0:
            return
        if self._copy is not None:
            # The validated values as they were read: PostgreSQL parses them faster than Arrow re-formats them.
            buffer = io.BytesIO()
            pacsv.write_csv(batch.text, buffer, CSV_FOR_COPY)
            self._copy.write(buffer.getvalue())
            return
        assert self._data is not None  # noqa: S101 - set by __enter__
        self._data.execute(self.table.insert(), batch.data.to_pylist())
        self._data.commit()

    def write_rejects(self, rejects: list[Reject]) -> None:
        if not rejects:
            return
        assert self._side is not None  # noqa: S101 - set by __enter__
        rows = [{"dataset_id": self.dataset_id, "job_id": self.job_id, "line": r.line, "column": r.column,
                 "value": _storable(r.value), "reason": r.reason} for r in rejects]  # fmt: skip
        self._side.execute(sa.insert(REJECTS), rows)
        self._side.commit()

    def finish(self) -> None:
        """End the COPY and commit: the staging table is complete (still invisible to readers)."""
        if self._copy is not None:
            copy, self._copy = self._copy, None
            copy.close()
            assert self._data is not None  # noqa: S101 - set by __enter__
            self._data.connection.driver_connection.commit()  # type: ignore[union-attr] # COPY ran on the driver
        self._stack.close()

    def __exit__(self, exc_type: object, *_: object) -> None:
        try:
            if self._copy is not None:  # an error mid-COPY: abort it, the connection rolls back
                copy, self._copy = self._copy, None
                copy.abort()
            self._stack.close()
        finally:
            if exc_type is not None:
                with self.engine.connect() as connection:
                    discard_staging(connection, self.table.name, self.dataset_id, self.job_id)
                    connection.commit()


def _storable(value: str | None) -> str | None:
    """A rejected value as text PostgreSQL can hold (NUL shown as \\0)."""
    return None if value is None else value.replace("\x00", "\\0")


def discard_staging(connection: Connection, name: str, dataset_id: uuid.UUID, job_id: uuid.UUID) -> None:
    """What an ingest that did not finish leaves: its staging table and its rejects."""
    connection.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))  # name from staging_name: [a-z0-9_] only
    connection.execute(sa.delete(REJECTS).where(REJECTS.c.dataset_id == dataset_id, REJECTS.c.job_id == job_id))


def swap_in(
    connection: Connection, *, table_name: str, staging: str, columns: list[ColumnSpec], mode: str, exists: bool
) -> None:
    """Make the staged rows the dataset's (replace) or add them (append), in the caller's transaction."""
    main = table_of(table_name, columns)
    if mode == "replace" or not exists:
        if exists:
            main.drop(connection)
        connection.execute(sa.text(f'ALTER TABLE "{staging}" RENAME TO "{table_name}"'))
        if connection.dialect.name == "postgresql":  # loaded without a key: one index build beats one per row
            connection.execute(sa.text(f'ALTER TABLE "{table_name}" ADD PRIMARY KEY ("{ROW_COLUMN}")'))
    else:
        staged = table_of(staging, columns)
        offset = sa.select(sa.func.coalesce(sa.func.max(main.c[ROW_COLUMN]), 0)).scalar_subquery()
        names = [c.name for c in main.columns]
        rows = sa.select(staged.c[ROW_COLUMN] + offset, *(staged.c[n] for n in names[1:]))
        connection.execute(sa.insert(main).from_select(names, rows))
        staged.drop(connection)
