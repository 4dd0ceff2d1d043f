"""`conveyor` commands: up, db upgrade, submit (one or a batch), status, schedule, dataset."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import Any

import click

from cli.client import ApiClient, ApiError, api_option, client_for
from cli.datasets import dataset
from cli.doctor import doctor
from cli.keys import ensure_admin_key, ensure_flower_auth, keys
from cli.processes import NoRedisServer, fresh_metrics_dir, process_commands, process_env
from cli.queues import queues
from cli.schedules import schedule, sync_file
from cli.supervisor import GracefulManager, start_broker, stop_broker
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade_database
from core.reconcile import release_jobs_of
from core.settings import Settings, redacted

TERMINAL = {"succeeded", "failed", "cancelled"}


@click.group()
def main() -> None:
    """Conveyor: background jobs and data processing with a job ledger that never loses a job."""


@main.command()
def up() -> None:
    """Migrate, then run api + worker + beat + flower (and the embedded broker) until Ctrl-C."""
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings.resolved_database_url)
    if settings.schedules_file is not None:
        report = sync_file(settings, settings.schedules_file)
        click.echo(f"schedules from {settings.schedules_file}: {report.summary()}")
    try:
        commands = process_commands(settings)
    except NoRedisServer as exc:
        raise click.ClickException(str(exc)) from None
    env = {**os.environ, **process_env(settings)}
    api = f"http://{settings.api_host}:{settings.api_port}"
    data = settings.data_dir.resolve()
    flower = f"http://{settings.flower_host}:{settings.flower_port}"
    click.echo(
        f"Conveyor starting on {settings.resolved_database_url.split('://')[0]} + "
        f"{redacted(settings.resolved_broker_url)}\n"
        f"  API     {api}/v1/jobs\n  Docs    {api}/docs\n  Data    {data}"
    )
    if settings.auth == "off":
        click.secho(
            "  AUTH IS OFF (CONVEYOR_AUTH=off): every request on loopback acts as an admin without a key,\n"
            "  and Flower's API is open on loopback. Never run this way where others can reach the machine.",
            fg="red", bold=True, err=True,
        )  # fmt: skip
        click.echo(f"  Flower  {flower}")
        flower_env = {}
    else:
        token, made = ensure_admin_key(settings)
        shown = token if made else f"in {data / 'admin.key'}"
        click.echo(f"  Key     {shown}   (admin of tenant `default`; send `Authorization: Bearer <key>`)")
        if made:
            click.echo(f"          saved to {data / 'admin.key'} (mode 0600); it is not printed again")
        flower_auth = ensure_flower_auth(settings)
        click.echo(f"  Flower  {flower}   (user {flower_auth.split(':', 1)[0]}, password in {data / 'flower.auth'})")
        flower_env = {"FLOWER_BASIC_AUTH": flower_auth}
    click.echo("Press Ctrl-C to stop everything.")
    # Conveyor's processes count into one metrics directory, which the API's GET /metrics reads whole; Flower keeps
    # its own metrics out of it.
    metrics_env = {"PROMETHEUS_MULTIPROC_DIR": str(fresh_metrics_dir(settings))}
    broker = start_broker(commands.pop("redis"), env) if "redis" in commands else None
    manager = GracefulManager(settings.shutdown_grace_seconds)
    for name, command in commands.items():
        manager.add_process(name, command, env=env | (flower_env if name == "flower" else metrics_env))
    try:
        manager.loop()
    finally:
        if manager.killed:
            released = release_killed_workers(settings)
            click.echo(f"released {released} jobs the stopped workers held: they run again at the next start")
        if broker is not None:
            stop_broker(broker)
    sys.exit(manager.returncode)


def release_killed_workers(settings: Settings) -> int:
    """After the grace ran out: the jobs this host's killed workers held run again at the next start."""
    host = socket.gethostname()
    engine = make_engine(settings.resolved_database_url)
    try:
        with make_sessionmaker(engine)() as session, session.begin():
            return release_jobs_of(session, [f"jobs@{host}:", f"maintenance@{host}:"],
                                   backoff_cap=settings.retry_backoff_max)  # fmt: skip
    finally:
        engine.dispose()


main.add_command(schedule)
main.add_command(dataset)
main.add_command(keys)
main.add_command(queues)
main.add_command(doctor)


@main.group()
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


def _describe(job: dict[str, Any]) -> str:
    progress = job.get("progress") or {}
    line = f"{job['id']}  {job['status']:<9}  attempt {job['attempt']}/{job['max_attempts']}"
    if progress.get("total"):
        line += f"  {100 * (progress.get('done') or 0) / progress['total']:5.1f}%"
    if job.get("error") and job["status"] in ("failed", "retrying"):
        line += f"  {job['error'].get('type')}: {job['error'].get('message')}"
    return line


BATCH_SIZE = 1000


def read_batch_file(path: str) -> list[dict[str, Any]]:
    """Job bodies from a JSON array or JSON Lines (one job per line, as for POST /v1/jobs)."""
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    try:
        if text.lstrip().startswith("["):
            jobs = json.loads(text)
        else:
            jobs = [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"not JSON or JSON Lines: {exc}", param_hint="--batch") from None
    if not all(isinstance(job, dict) for job in jobs):
        raise click.BadParameter("every job must be a JSON object like the body of POST /v1/jobs", param_hint="--batch")
    return jobs  # type: ignore[no-any-return]  # checked above: a list of JSON objects


def submit_batch(client: ApiClient, jobs: list[dict[str, Any]]) -> None:
    accepted = existing = rejected = 0
    for start in range(0, len(jobs), BATCH_SIZE):
        result = client.request("POST", "/v1/jobs:batch", {"jobs": jobs[start : start + BATCH_SIZE]})
        accepted, existing = accepted + result["accepted"], existing + result["existing"]
        rejected += result["rejected"]
        for item in result["items"]:
            if item["job"]:
                click.echo(item["job"]["id"])
            else:
                error = item["error"]
                click.echo(f"job {start + item['index'] + 1}: {error['detail']} {error.get('errors') or ''}", err=True)
        click.echo(f"{min(start + BATCH_SIZE, len(jobs))}/{len(jobs)} sent", err=True)
    click.echo(f"accepted {accepted}, existing {existing}, rejected {rejected}", err=True)
    if rejected:
        sys.exit(1)


@main.command()
@click.argument("job_type", required=False)
@click.option("--payload", default="{}", help="The job's payload as JSON.")
@click.option("--priority", type=click.IntRange(0, 9))
@click.option("--delay", "delay_seconds", type=float, help="Start after this many seconds.")
@click.option("--idempotency-key")
@click.option("--batch", "batch_file", help="Submit every job in FILE (JSON array or JSON Lines; - for stdin).")
@click.option("--wait", is_flag=True, help="Wait for the job to finish, showing progress.")
@api_option
def submit(
    job_type: str | None,
    payload: str,
    priority: int | None,
    delay_seconds: float | None,
    idempotency_key: str | None,
    batch_file: str | None,
    wait: bool,
    api: str | None,
) -> None:
    """Submit a job of JOB_TYPE and print its id (with --wait, follow it to the end), or many with --batch."""
    client = client_for(api)
    if batch_file:
        try:
            submit_batch(client, read_batch_file(batch_file))
        except (ApiError, OSError) as exc:
            raise click.ClickException(str(exc)) from None
        return
    if not job_type:
        raise click.UsageError("give a JOB_TYPE, or --batch FILE")
    try:
        body: dict[str, Any] = {"type": job_type, "payload": json.loads(payload)}
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from None
    if priority is not None:
        body["priority"] = priority
    if delay_seconds is not None:
        body["delay_seconds"] = delay_seconds
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    try:
        job = client.request("POST", "/v1/jobs", body, headers=headers)
    except (ApiError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if not wait:
        click.echo(job["id"])
        return
    while job["status"] not in TERMINAL:
        click.echo("\r" + _describe(job).ljust(100), nl=False, err=True)
        time.sleep(0.3)
        job = client.request("GET", f"/v1/jobs/{job['id']}")
    click.echo("\r" + " " * 100 + "\r", nl=False, err=True)
    click.echo(_describe(job))
    if job["status"] == "succeeded":
        click.echo(json.dumps(client.request("GET", f"/v1/jobs/{job['id']}/result")["data"]))
    else:
        sys.exit(1)


@main.command()
@click.argument("job_id")
@click.option("--events", is_flag=True, help="Also print the job's audit trail.")
@api_option
def status(job_id: str, events: bool, api: str | None) -> None:
    """Show a job's status, progress and error."""
    client = client_for(api)
    try:
        job = client.request("GET", f"/v1/jobs/{job_id}")
        click.echo(_describe(job))
        if events:
            for event in client.request("GET", f"/v1/jobs/{job_id}/events")["items"]:
                click.echo(
                    f"  {event['created_at']}  {event['kind']:<16} attempt {event['attempt']}  {event['worker'] or ''}"
                )
    except (ApiError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
