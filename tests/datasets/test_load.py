"""The PostgreSQL staging load: a binary COPY of typed Arrow batches on a connection of its own, all or nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import adbc_driver_manager as adbc
import pyarrow as pa
import pytest
from sqlalchemy import Engine

from core.datasets.load import ArrowCopy, StagingLoad
from core.datasets.schema import ColumnSpec, arrow_schema
from core.datasets.typing import TypedBatch

COLUMNS = [ColumnSpec(name="n", type="integer"), ColumnSpec(name="s", type="string")]


@pytest.fixture
def postgres(clean_db: Engine) -> Iterator[Engine]:
    if clean_db.dialect.name != "postgresql":
        pytest.skip("the binary COPY is PostgreSQL's path (SQLite inserts batches)")
    yield clean_db


def batch(first: int, count: int) -> pa.RecordBatch:
    rows = range(first, first + count)
    return pa.RecordBatch.from_arrays(
        [pa.array(rows, pa.int64()), pa.array(rows, pa.int64()), pa.array([f"v{i}" for i in rows])],
        schema=arrow_schema(COLUMNS),
    )


def copy_into_new_table(engine: Engine, columns_sql: str) -> tuple[str, ArrowCopy]:
    name = f"ds_t_copy_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.exec_driver_sql(f'CREATE TABLE "{name}" ({columns_sql})')
    return name, ArrowCopy(engine, name, arrow_schema(COLUMNS))


def staged_rows(engine: Engine, name: str) -> int | None:
    """The rows of a staging table, None when it does not exist."""
    with engine.connect() as connection:
        exists = connection.exec_driver_sql(f"SELECT to_regclass('\"{name}\"') IS NOT NULL").scalar()
        return connection.exec_driver_sql(f'SELECT count(*) FROM "{name}"').scalar() if exists else None  # noqa: S608


def test_batches_become_rows_after_finish(postgres: Engine) -> None:
    name = f"ds_t_stg_{uuid.uuid4().hex[:8]}"
    with StagingLoad(postgres, name, COLUMNS, uuid.uuid4(), uuid.uuid4()) as load:
        for first in range(1, 10_001, 1_000):
            load.write(TypedBatch(batch(first, 1_000), [], COLUMNS))
        load.finish()
    assert staged_rows(postgres, name) == 10_000
    with postgres.connect() as connection:
        assert connection.exec_driver_sql(f'SELECT sum(n), max(s) FROM "{name}"').one() == (50_005_000, "v9999")  # noqa: S608


def test_a_failed_ingest_leaves_no_staging_table(postgres: Engine) -> None:
    name = f"ds_t_stg_{uuid.uuid4().hex[:8]}"
    with pytest.raises(RuntimeError, match="cancelled"):
        with StagingLoad(postgres, name, COLUMNS, uuid.uuid4(), uuid.uuid4()) as load:
            load.write(TypedBatch(batch(1, 1_000), [], COLUMNS))
            raise RuntimeError("cancelled mid-ingest")
    assert staged_rows(postgres, name) is None


def test_a_refused_copy_raises_and_commits_nothing(postgres: Engine) -> None:
    """What the server refuses (here a string into a bigint column) fails the load, and no row is kept."""
    name, copy = copy_into_new_table(postgres, "_row bigint, n bigint, s bigint")
    with pytest.raises(adbc.Error) as refused:
        for first in range(1, 50_001, 1_000):
            copy.write(batch(first, 1_000))
        copy.close()
    assert "COPY" in str(refused.value) and "column s" in str(refused.value)
    assert staged_rows(postgres, name) == 0


def test_an_aborted_copy_keeps_nothing(postgres: Engine) -> None:
    name, copy = copy_into_new_table(postgres, "_row bigint, n bigint, s text")
    for first in range(1, 5_001, 1_000):
        copy.write(batch(first, 1_000))
    copy.abort()
    assert staged_rows(postgres, name) == 0
