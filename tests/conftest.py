"""Fixtures shared by all tests: a migrated database per backend (embedded SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, inspect
from sqlalchemy.orm import Session

from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade_database
from core.models import Base
from core.registry import Registry, load_registry
from tests.support.backends import postgres_database

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database of each backend, one per test run."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'conveyor.db'}"
        upgrade_database(url)
        yield url
    else:
        with postgres_database() as url:
            upgrade_database(url)
            yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clean_db(engine: Engine) -> Iterator[Engine]:
    yield engine
    with engine.begin() as conn:
        # every table of the model, children first: a new table is never forgotten (a leftover pause held jobs)
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
        for name in inspect(conn).get_table_names():
            if name.startswith("ds_"):  # the datasets' own tables
                conn.exec_driver_sql(f'DROP TABLE "{name}"')


@pytest.fixture
def session(clean_db: Engine) -> Iterator[Session]:
    with make_sessionmaker(clean_db)() as session:
        yield session


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path
