"""`conveyor`: the command-line entry point.

Each subcommand's module is imported only when that subcommand runs: they pull in SQLAlchemy, Celery and pydantic
(about a second on a small machine), which `conveyor --help` and a typo do not need. COMMANDS holds what
`conveyor --help` prints for each; tests/test_cli.py checks it is the first sentence of the command's own help."""

from __future__ import annotations

import importlib

import click

# name -> (module:attribute, its one line in `conveyor --help`), in the order a newcomer meets them
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("cli.up:up", "Migrate, then run api + worker + beat + flower (and the embedded broker) until Ctrl-C."),
    "submit": ("cli.jobs:submit",
               "Submit a job of JOB_TYPE and print its id (with --wait, follow it to the end), or many with --batch."),
    "status": ("cli.jobs:status", "Show a job's status, progress and error."),
    "workflow": ("cli.workflows:workflow", "Workflows: submit, show, list, cancel, retry."),
    "schedule": ("cli.schedules:schedule",
                 "Periodic jobs: list, show, create, update, pause, resume, trigger, runs, delete, sync."),
    "dataset": ("cli.datasets:dataset",
                "Datasets: upload, fetch, list, show, rows, rejects, aggregate, join, query, export, delete."),
    "queues": ("cli.queues:queues",
               "Queues: list, pause, resume, drain, retry-failed (every tenant's jobs unless --tenant)."),
    "keys": ("cli.keys:keys",
             "API keys: create, list, revoke (in the database of CONVEYOR_DATABASE_URL; no key needed)."),
    "doctor": ("cli.doctor:doctor",
               "Check settings, database and migrations, clocks, broker, queues, workers, beat and Flower."),
    "db": ("cli.db:db", "Database schema commands."),
}  # fmt: skip


class LazyGroup(click.Group):
    """A group whose subcommands load on first use (click's documented lazy-loading pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute = COMMANDS[cmd_name][0].split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])


@click.group(cls=LazyGroup)
def main() -> None:
    """Conveyor: background jobs and data processing with a job ledger that never loses a job."""
