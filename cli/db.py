"""`conveyor db`: the database schema."""

from __future__ import annotations

import click

from core.migrate import upgrade_database
from core.settings import Settings


@click.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations to CONVEYOR_DATABASE_URL."""
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings.resolved_database_url, revision)
    click.echo(f"database at {revision}")
