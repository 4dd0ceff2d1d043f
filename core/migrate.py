"""Apply Alembic migrations programmatically (used by `conveyor up`, `conveyor db upgrade` and the tests)."""

from __future__ import annotations

import functools

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "core:migrations")
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_database(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


@functools.cache
def head_revision() -> str:
    """The newest migration this code has (read once: /readyz asks on every probe)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None  # noqa: S101 - the migrations ship with the code
    return head


def current_revision(connection: Connection) -> str | None:
    """The migration the database is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()
