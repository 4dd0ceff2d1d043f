"""`conveyor up`: the whole deployment on one machine (migrate, then api + workers + beat + flower and the embedded
broker) until Ctrl-C."""

from __future__ import annotations

import os
import socket
import sys

import click

from cli.keys import ensure_admin_key, ensure_flower_auth
from cli.processes import NoRedisServer, fresh_metrics_dir, process_commands, process_env, running_as_root
from cli.schedules import sync_file
from cli.supervisor import BrokerFailed, GracefulManager, start_broker, stop_broker
from core.db import make_engine
from core.migrate import upgrade_database
from core.publish import process_sessions
from core.queue import CeleryPublisher, make_celery
from core.reconcile import release_jobs_of
from core.registry import load_registry
from core.settings import Settings, redacted


@click.command()
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
        f"  API     {api}/v1/jobs\n  Console {api}/console (sign in with the key)\n  Docs    {api}/docs\n"
        f"  Data    {data}"
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
    if running_as_root():
        click.echo("  Running as root: fine on a laptop or a throwaway VM; in production run Conveyor as an\n"
                   "  unprivileged user (the Dockerfile does). Celery's warning about it is left out.")  # fmt: skip
    try:
        broker = (start_broker(commands.pop("redis"), env, settings.broker_socket, data / "redis.log")
                  if "redis" in commands else None)  # fmt: skip
    except BrokerFailed as exc:
        raise click.ClickException(str(exc)) from None
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
    # a stop asked for is a clean exit (`make up` ends without an error); a process that stopped on its own is not
    sys.exit(0 if manager.stop_requested else manager.returncode)


def release_killed_workers(settings: Settings) -> int:
    """After the grace ran out: the jobs this host's killed workers held run again at the next start."""
    host = socket.gethostname()
    engine = make_engine(settings.resolved_database_url)
    try:
        # a workflow's job failed for good here moves its workflow on; what that releases is published when the
        # broker still answers, else by the reconciler at the next start
        publisher = CeleryPublisher(make_celery(settings, producer=True), lean=settings.celery_lean)
        with process_sessions(engine, settings, load_registry(), publisher)() as session, session.begin():
            return release_jobs_of(session, [f"jobs@{host}:", f"maintenance@{host}:"],
                                   backoff_cap=settings.retry_backoff_max)  # fmt: skip
    finally:
        engine.dispose()
