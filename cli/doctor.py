"""`conveyor doctor`: one line per check of a deployment (core/doctor.py), what to do for each that fails, and exit
code 1 when any does."""

from __future__ import annotations

import sys

import click
from pydantic import ValidationError

from core.db import make_engine
from core.doctor import run_all
from core.settings import Settings


@click.command()
def doctor() -> None:
    """Check settings, database and migrations, clocks, broker, queues, workers, beat and Flower."""
    try:
        settings = Settings()
    except ValidationError as exc:
        click.echo("FAIL settings            " + "; ".join(
            f"CONVEYOR_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()))  # fmt: skip
        click.echo("                         -> fix these environment variables (README, Settings)")
        sys.exit(1)
    engine = make_engine(settings.resolved_database_url)
    try:
        checks = run_all(settings, engine)
    finally:
        engine.dispose()
    for check in checks:
        click.echo(f"{'ok' if check.ok else 'FAIL':<4} {check.name:<20} {check.detail}")
        if not check.ok and check.fix:
            click.echo(f"{'':<25} -> {check.fix}")
    failed = [check.name for check in checks if not check.ok]
    click.echo(f"{len(checks) - len(failed)} of {len(checks)} checks pass" + (f"; failing: {', '.join(failed)}"
                                                                              if failed else ""))  # fmt: skip
    sys.exit(1 if failed else 0)
