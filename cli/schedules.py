"""`conveyor schedule ...`: manage schedules over the API; `sync` writes a schedule file into the database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cli.client import ApiClient, api_option, call_api, client_for
from core.db import make_engine, make_sessionmaker
from core.errors import ConveyorError
from core.registry import load_registry
from core.schedule_files import SyncReport, load_schedule_file, sync_schedules
from core.settings import Settings


@click.group("schedule")
def schedule() -> None:
    """Periodic jobs: list, show, create, update, pause, resume, trigger, runs, delete, sync."""


def _describe(item: dict[str, Any]) -> str:
    cadence = f"cron '{item['cron']}' {item['timezone']}" if item["cron"] else f"every {item['interval_seconds']}s"
    state = "enabled" if item["enabled"] else "paused"
    return f"{item['id']}  {item['name']:<24} {item['type']:<12} {cadence:<32} {state:<8} next {item['next_fire_at']}"


def _resolve(client: ApiClient, ref: str) -> dict[str, Any]:
    """A schedule by id or by name."""
    for item in client.request("GET", "/v1/schedules")["items"]:
        if ref in (item["id"], item["name"]):
            return dict(item)
    raise click.ClickException(f"no schedule with id or name {ref!r} (conveyor schedule list shows them)")


def _definition_options(command: Any) -> Any:
    options = [
        click.option("--type", "type_", help="Job type to submit at every slot."),
        click.option("--cron", help="Cron expression, e.g. '0 2 * * *'."),
        click.option("--timezone", help="IANA zone of the cron expression (default UTC)."),
        click.option("--every", "interval_seconds", type=click.IntRange(min=1), help="Or: every N seconds."),
        click.option("--payload", help="The job's payload as JSON; may use {{ slot_date }} and friends."),
        click.option("--misfire", type=click.Choice(["skip", "all", "none"]), help="Policy for missed slots."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _body(**fields: Any) -> dict[str, Any]:
    body = {name: value for name, value in fields.items() if value is not None}
    if "payload" in body:
        try:
            body["payload"] = json.loads(body["payload"])
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from None
    return body


@schedule.command("list")
@api_option
def list_(api: str | None) -> None:
    """List schedules."""
    for item in call_api(lambda: client_for(api).request("GET", "/v1/schedules"))["items"]:
        click.echo(_describe(item))


@schedule.command()
@click.argument("ref")
@api_option
def show(ref: str, api: str | None) -> None:
    """Show a schedule (by id or name) as JSON, with its next fire times."""
    click.echo(json.dumps(call_api(lambda: _resolve(client_for(api), ref)), indent=2))


@schedule.command()
@click.argument("name")
@_definition_options
@click.option("--paused", is_flag=True, help="Create it paused.")
@api_option
def create(name: str, type_: str | None, paused: bool, api: str | None, **fields: Any) -> None:
    """Create schedule NAME: --type and one of --cron or --every."""
    body = _body(name=name, type=type_, **fields) | ({"enabled": False} if paused else {})
    created = call_api(lambda: client_for(api).request("POST", "/v1/schedules", body))
    click.echo(_describe(created))


@schedule.command()
@click.argument("ref")
@_definition_options
@api_option
def update(ref: str, type_: str | None, api: str | None, **fields: Any) -> None:
    """Change the given fields of a schedule (--every replaces --cron and the other way round)."""
    body = _body(type=type_, **fields)
    if "cron" in body:
        body["interval_seconds"] = None
    if "interval_seconds" in body:
        body["cron"] = None
    client = client_for(api)
    updated = call_api(lambda: client.request("PATCH", f"/v1/schedules/{_resolve(client, ref)['id']}", body))
    click.echo(_describe(updated))


def _action(name: str, method: str, suffix: str, help_text: str) -> None:
    @schedule.command(name, help=help_text)
    @click.argument("ref")
    @api_option
    def command(ref: str, api: str | None) -> None:
        client = client_for(api)
        target = call_api(lambda: _resolve(client, ref))
        result = call_api(lambda: client.request(method, f"/v1/schedules/{target['id']}{suffix}"))
        if result is None:  # DELETE answers 204
            click.echo(f"deleted schedule {target['name']} ({target['id']}); the jobs it made stay")
        elif "interval_seconds" in result:
            click.echo(_describe(result))
        else:  # trigger answers the job it submitted
            click.echo(f"{result['id']}  {result['status']}")


_action("pause", "POST", "/pause", "Pause a schedule (by id or name).")
_action("resume", "POST", "/resume", "Resume a schedule from now.")
_action("trigger", "POST", "/trigger", "Run the schedule's job now; prints the job id.")
_action("delete", "DELETE", "", "Delete a schedule (the jobs it made stay).")


@schedule.command()
@click.argument("ref")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@api_option
def runs(ref: str, limit: int, api: str | None) -> None:
    """The jobs a schedule made, newest slot first."""
    client = client_for(api)
    page = call_api(lambda: client.request("GET", f"/v1/schedules/{_resolve(client, ref)['id']}/runs?limit={limit}"))
    for job in page["items"]:
        click.echo(f"{job['schedule_slot']}  {job['id']}  {job['status']}")


@schedule.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option("--no-prune", is_flag=True, help="Keep file-owned schedules the file no longer lists.")
def sync(path: Path, dry_run: bool, no_prune: bool) -> None:
    """Make the database's file-owned schedules match PATH (YAML or TOML), in one transaction."""
    report = sync_file(Settings(), path, dry_run=dry_run, prune=not no_prune)
    for verb in ("created", "updated", "deleted", "unchanged"):
        names = getattr(report, verb)
        if names:
            click.echo(f"{'would be ' if dry_run else ''}{verb}: {', '.join(names)}")


def sync_file(settings: Settings, path: Path, *, dry_run: bool = False, prune: bool = True) -> SyncReport:
    """Used by `conveyor schedule sync` and by `conveyor up` for CONVEYOR_SCHEDULES_FILE."""
    engine = make_engine(settings.resolved_database_url)
    try:
        with make_sessionmaker(engine)() as session:
            report = sync_schedules(
                session, load_schedule_file(path), registry=load_registry(), known_queues=settings.queues,
                prune=prune,
            )  # fmt: skip
            session.rollback() if dry_run else session.commit()
            return report
    except ConveyorError as exc:
        details = "".join(f"\n  {e.get('field')}: {e.get('message')}" for e in exc.errors)
        raise click.ClickException(exc.detail + details) from None
    finally:
        engine.dispose()
