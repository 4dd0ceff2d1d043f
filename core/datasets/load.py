"""Writing typed batches: a staging table on a connection of its own (PostgreSQL `COPY`, SQLite batched inserts),
then one swap into the dataset's table in the job's own transaction, so readers see all of an ingest or none of it."""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import cast

import adbc_driver_manager as adbc
import adbc_driver_postgresql
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from core.datasets.formats import Reject
from core.datasets.schema import ROW_COLUMN, ColumnSpec, arrow_schema, sql_type, table_of
from core.datasets.typing import TypedBatch
from core.models import DatasetReject

REJECTS = cast(sa.Table, DatasetReject.__table__)
# The COPY's own connection failed (a restart, a failover): as with SQLAlchemy's OperationalError, another attempt
# may well succeed, and the attempt that failed left nothing (its transaction is gone).
COPY_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (adbc.OperationalError,)


def staging_name(table_name: str, job_id: uuid.UUID) -> str:
    """Per job, so a retried attempt finds (and drops) what a killed one left behind."""
    return f"{table_name[:30]}_stg_{job_id.hex[:16]}"


class ArrowCopy:
    """One binary `COPY … FROM STDIN` of typed Arrow batches, written in C by ADBC's PostgreSQL driver on a
    connection of its own. PostgreSQL reads binary values about twice as fast as CSV text (bench/ingest.py), and
    the typed batches go as they are, with nothing re-formatted. The COPY runs on a thread of its own (it releases
    the GIL), fed through a small bounded queue, so the next batch is read and typed while this one is stored.
    At most `depth` batches wait."""

    def __init__(self, engine: Engine, table: str, schema: pa.Schema, depth: int = 3) -> None:
        self._queue: queue.Queue[pa.RecordBatch | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._abort = False
        uri = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)  # libpq's form
        self._database = adbc_driver_postgresql.connect(uri)
        self._connection = adbc.AdbcConnection(self._database)
        self._connection.set_autocommit(False)
        self._statement = adbc.AdbcStatement(self._connection)
        self._statement.set_options(
            **{adbc.INGEST_OPTION_TARGET_TABLE: table, adbc.INGEST_OPTION_MODE: adbc.INGEST_OPTION_MODE_APPEND}
        )
        self._statement.bind_stream(pa.RecordBatchReader.from_batches(schema, self._batches()))
        self._thread = threading.Thread(target=self._run, name="arrow-copy", daemon=True)
        self._thread.start()

    def _batches(self) -> Iterator[pa.RecordBatch]:
        while (batch := self._queue.get()) is not None:
            yield batch
        if self._abort:
            raise CopyAborted("ingest aborted")  # the driver then ends the COPY with an error: nothing is kept

    def _run(self) -> None:
        try:
            self._statement.execute_update()
        except BaseException as exc:
            self._error = exc  # the producer sees it at its next put

    def _put(self, item: pa.RecordBatch | None) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def write(self, batch: pa.RecordBatch) -> None:
        if self._error is not None:
            raise self._error
        self._put(batch)
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """End the COPY and commit it (raising what the server refused, if anything)."""
        self._put(None)
        self._thread.join()
        try:
            if self._error is not None:
                raise self._error
            self._connection.commit()
        finally:
            self._release()

    def abort(self) -> None:
        self._abort = True
        self._put(None)
        self._thread.join()
        self._release()  # closing the connection rolls its transaction back

    def _release(self) -> None:
        for handle in (self._statement, self._connection, self._database):
            handle.close()


class CopyAborted(Exception):
    pass


class StagingLoad:
    """Loads one ingest into its staging table. PostgreSQL streams a single binary COPY for the whole file (the
    table's key is built after, in one pass); SQLite commits every batch, so the one writer lock is never held for a
    whole ingest (the API keeps accepting jobs)."""

    def __init__(
        self, engine: Engine, name: str, columns: list[ColumnSpec], dataset_id: uuid.UUID, job_id: uuid.UUID
    ) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self.columns = columns
        self.table = table_of(name, columns, keyed=not self.postgres)  # PostgreSQL: the key after the COPY (swap_in)
        self.schema = arrow_schema(columns)
        self.dataset_id = dataset_id
        self.job_id = job_id
        self._stack = ExitStack()
        self._copy: ArrowCopy | None = None
        self._connection: Connection | None = None  # the staging table, the rejects (and SQLite's rows)

    def __enter__(self) -> StagingLoad:
        self._connection = self._stack.enter_context(self.engine.connect())
        discard_staging(self._connection, self.table.name, self.dataset_id, self.job_id)
        self.table.create(self._connection)
        self._connection.commit()
        if self.postgres:
            self._copy = ArrowCopy(self.engine, self.table.name, self.schema)
        return self

    def write(self, batch: TypedBatch) -> None:
        if batch.data.num_rows == 0:
            return
        if self._copy is not None:
            self._copy.write(batch.data)
            return
        assert self._connection is not None  # noqa: S101 - set by __enter__
        self._connection.execute(self.table.insert(), batch.data.to_pylist())
        self._connection.commit()

    def widen(self, columns: list[ColumnSpec]) -> None:
        """The staging table's columns become `columns`' types (a widening, core/datasets/typing.py: integer →
        float, date → timestamp), its rows so far converted. PostgreSQL ends the COPY so far, alters the table and
        starts another; SQLite, which cannot alter a column's type, copies it into a new column of the new type."""
        assert self._connection is not None  # noqa: S101 - set by __enter__
        if self._copy is not None:
            copy, self._copy = self._copy, None
            copy.close()
        conform(self._connection, self.table.name, self.columns, columns)
        self._connection.commit()
        self.columns = columns
        self.table = table_of(self.table.name, columns, keyed=not self.postgres)
        self.schema = arrow_schema(columns)
        if self.postgres:
            self._copy = ArrowCopy(self.engine, self.table.name, self.schema)

    def write_rejects(self, rejects: list[Reject]) -> None:
        if not rejects:
            return
        assert self._connection is not None  # noqa: S101 - set by __enter__
        rows = [{"dataset_id": self.dataset_id, "job_id": self.job_id, "line": r.line, "column": r.column,
                 "value": _storable(r.value), "reason": r.reason} for r in rejects]  # fmt: skip
        self._connection.execute(sa.insert(REJECTS), rows)
        self._connection.commit()

    def finish(self) -> None:
        """End the COPY and commit: the staging table is complete (still invisible to readers)."""
        if self._copy is not None:
            copy, self._copy = self._copy, None
            copy.close()
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


def _widening_sql(table: str, name: str, column: ColumnSpec, dialect: sa.Dialect) -> list[str]:
    """Statements that retype column `name` of `table` (identifiers: ours, [a-z0-9_] only) to `column`'s wider type,
    converting its values."""
    ddl = sql_type(column).compile(dialect=dialect)
    if dialect.name == "postgresql":
        as_new = f"\"{name}\"::timestamp AT TIME ZONE 'UTC'" if column.type == "timestamp" else f'"{name}"::float8'
        return [f'ALTER TABLE "{table}" ALTER COLUMN "{name}" TYPE {ddl} USING {as_new}']
    # SQLite keeps a date as 'YYYY-MM-DD' and a timestamp as 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLAlchemy's forms)
    as_new = f"\"{name}\" || ' 00:00:00.000000'" if column.type == "timestamp" else f'CAST("{name}" AS REAL)'
    wide = f"{name}__wide"
    return [
        f'ALTER TABLE "{table}" ADD COLUMN "{wide}" {ddl}',
        f'UPDATE "{table}" SET "{wide}" = {as_new}',  # noqa: S608 - our identifiers, no value
        f'ALTER TABLE "{table}" DROP COLUMN "{name}"',
        f'ALTER TABLE "{table}" RENAME COLUMN "{wide}" TO "{name}"',
    ]


def _storable(value: str | None) -> str | None:
    """A rejected value as text PostgreSQL can hold (NUL shown as \\0)."""
    return None if value is None else value.replace("\x00", "\\0")


def discard_staging(connection: Connection, name: str, dataset_id: uuid.UUID, job_id: uuid.UUID) -> None:
    """What an ingest that did not finish leaves: its staging table and its rejects."""
    connection.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))  # name from staging_name: [a-z0-9_] only
    connection.execute(sa.delete(REJECTS).where(REJECTS.c.dataset_id == dataset_id, REJECTS.c.job_id == job_id))


def swap_in(
    connection: Connection, *, table_name: str, staging: str, staged: list[ColumnSpec], columns: list[ColumnSpec],
    current: list[ColumnSpec] | None, mode: str,
) -> None:  # fmt: skip
    """Make the staged rows the dataset's (replace) or add them (append), in the caller's transaction. `staged` are
    the staging table's columns, `columns` the dataset's from now on, `current` its table's so far (None: none yet).
    The table that stays is first given `columns`' (new columns added, widened ones retyped)."""
    if mode == "replace" or current is None:
        if current is not None:
            table_of(table_name, current).drop(connection)
        conform(connection, staging, staged, columns)
        connection.execute(sa.text(f'ALTER TABLE "{staging}" RENAME TO "{table_name}"'))
        if connection.dialect.name == "postgresql":  # loaded without a key: one index build beats one per row
            connection.execute(sa.text(f'ALTER TABLE "{table_name}" ADD PRIMARY KEY ("{ROW_COLUMN}")'))
        return
    conform(connection, table_name, current, columns)
    main, stage = table_of(table_name, columns), table_of(staging, staged)
    sources = {c.name: stage.c[c.column or c.name] for c in staged}
    offset = sa.select(sa.func.coalesce(sa.func.max(main.c[ROW_COLUMN]), 0)).scalar_subquery()
    values = [sources.get(c.name, sa.null()) for c in columns]  # a column the file lacked: null
    rows = sa.select(stage.c[ROW_COLUMN] + offset, *values)
    connection.execute(sa.insert(main).from_select([ROW_COLUMN, *(c.column or c.name for c in columns)], rows))
    stage.drop(connection)


def conform(connection: Connection, table: str, present: list[ColumnSpec], columns: list[ColumnSpec]) -> None:
    """Give `table` (with `present`'s columns) every column of `columns`: the missing ones added (nullable), the
    ones whose type widened retyped with their values."""
    have = {c.name: c for c in present}
    for column in columns:
        name = column.column or column.name
        if column.name not in have:
            ddl = sql_type(column).compile(dialect=connection.dialect)
            connection.execute(sa.text(f'ALTER TABLE "{table}" ADD COLUMN "{name}" {ddl}'))
        elif have[column.name].type != column.type:
            for statement in _widening_sql(table, name, column, connection.dialect):
                connection.execute(sa.text(statement))
