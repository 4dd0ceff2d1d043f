"""The Alembic migrations build exactly the schema the models declare, and step down and up again."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from core.db import make_engine
from core.migrate import alembic_config, upgrade_database
from core.models import Base


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    if engine.dialect.name == "sqlite":
        # SQLite does not report the name of a foreign key added by ALTER TABLE ADD COLUMN … REFERENCES.
        diff = [d for d in diff if d[0] not in ("add_fk", "remove_fk")]
    assert diff == []


def test_downgrade_to_the_first_revision_and_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade_database(url)
    command.downgrade(alembic_config(url), "0001")
    engine = make_engine(url)
    assert "schedules" not in inspect(engine).get_table_names()
    engine.dispose()
    upgrade_database(url)
    engine = make_engine(url)
    assert "schedule_slot" in {c["name"] for c in inspect(engine).get_columns("jobs")}
    engine.dispose()
