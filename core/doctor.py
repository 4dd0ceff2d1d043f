"""`conveyor doctor`'s checks, one function each: what a deployment needs to run jobs, and what to do when a check
fails. The API's /readyz reports the cheap ones (database, migrations, broker, beat) from the same functions."""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from core.migrate import current_revision, head_revision
from core.models import Heartbeat
from core.queue import broker_reachable, make_celery
from core.queue_names import QueueNames
from core.settings import LOOPBACK, Settings, redacted

CLOCK_SKEW_MAX = 2.0  # seconds between this host's clock and the database's before leases and schedules drift
INSPECT_TIMEOUT = 2.0  # seconds the workers have to answer a broadcast


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""  # what to do when it failed


def beat_window(settings: Settings) -> float:
    """How old the schedules tick (every CONVEYOR_SCHEDULE_TICK) may be before beat counts as stopped."""
    return max(10.0, 5 * settings.schedule_tick)


def check_database(engine: Engine, settings: Settings) -> list[Check]:
    """Reachable, migrated to this code's head, and its clock close to this host's."""
    url = redacted(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            database_now = connection.scalar(select(func.now()))
            revision = current_revision(connection)
    except Exception as exc:
        return [
            Check(
                "database",
                False,
                f"cannot connect to {url}: {_reason(exc)}",
                "Start the database, or point CONVEYOR_DATABASE_URL at it.",
            )
        ]
    checks = [Check("database", True, f"reachable at {url}")]
    head = head_revision()
    if revision == head:
        checks.append(Check("migrations", True, f"at the head revision, {head}"))
    else:
        checks.append(
            Check(
                "migrations",
                False,
                f"the database is at {revision or 'no revision'}, this code needs {head}",
                "Run `conveyor db upgrade` (conveyor up does it at start).",
            )
        )
    if isinstance(database_now, datetime):
        if database_now.tzinfo is None:  # SQLite's CURRENT_TIMESTAMP is UTC without a zone
            database_now = database_now.replace(tzinfo=UTC)
        skew = abs((datetime.now(UTC) - database_now).total_seconds())
        checks.append(
            Check(
                "clock",
                skew <= CLOCK_SKEW_MAX,
                f"this host and the database differ by {skew:.1f} s",
                "Synchronise the clocks (NTP): leases and schedules compare them.",
            )
        )
    return checks


def check_beat(engine: Engine, settings: Settings) -> Check:
    """The schedules tick ran recently: beat sent it and the maintenance worker ran it (worker/maintenance.py)."""
    try:
        with engine.connect() as connection:
            last = connection.scalar(select(Heartbeat.beat_at).where(Heartbeat.name == "schedules"))
    except Exception as exc:
        return Check("beat", False, f"cannot read the ticks' heartbeats: {_reason(exc)}", "Fix the database first.")
    fix = "Start beat (`celery -A worker.app beat`; conveyor up runs it) and the maintenance worker."
    if last is None:
        return Check("beat", False, "no maintenance tick has ever run", fix)
    if last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    age = (datetime.now(UTC) - last).total_seconds()
    if age > beat_window(settings):
        return Check("beat", False, f"the last tick ran {age:.0f} s ago", fix)
    return Check("beat", True, f"ticking (the last tick {age:.1f} s ago)")


def check_broker(app: Any, settings: Settings) -> Check:
    url = redacted(settings.resolved_broker_url)
    if broker_reachable(app, settings.publish_timeout):
        return Check("broker", True, f"reachable at {url}")
    return Check(
        "broker",
        False,
        f"cannot connect to {url}",
        "Start the broker (Redis or RabbitMQ), or point CONVEYOR_BROKER_URL at it.",
    )


def check_workers(app: Any, settings: Settings) -> list[Check]:
    """Every queue declared on the broker and consumed by a live worker (asked by broadcast, as Flower does)."""
    queues = list(dict.fromkeys([*settings.queues, QueueNames.MAINTENANCE]))
    try:
        answers = app.control.inspect(timeout=INSPECT_TIMEOUT).active_queues() or {}
    except Exception as exc:
        return [Check("workers", False, f"cannot ask the workers: {_reason(exc)}", "Fix the broker first.")]
    consumers: dict[str, list[str]] = {queue: [] for queue in queues}
    for worker, consumed in answers.items():
        for queue in consumed:
            consumers.setdefault(queue["name"], []).append(worker)
    checks = [_check_declared(app, queues)]
    for queue in settings.queues:
        if queue == QueueNames.MAINTENANCE:
            continue
        found = sorted(consumers.get(queue, []))
        checks.append(
            Check(
                f"workers:{queue}",
                bool(found),
                f"consumed by {', '.join(found)}" if found else "no worker consumes it",
                f"Start a worker for it: `celery -A worker.app worker -Q {queue}` (conveyor up runs "
                "one for every queue).",
            )
        )
    maintenance = sorted(consumers.get(QueueNames.MAINTENANCE, []))
    checks.append(
        Check(
            "maintenance",
            bool(maintenance),
            f"worker {', '.join(maintenance)}"
            if maintenance
            else "no maintenance worker (the reconciler, schedules, webhooks and the pruner do not run)",
            "Start it: `celery -A worker.app worker -Q maintenance -P solo` (conveyor up runs it).",
        )
    )
    return checks


def _check_declared(app: Any, queues: list[str]) -> Check:
    """On AMQP, each queue exists on the broker (a passive declare). Redis has no queue but its waiting messages:
    there, the workers' consumption (the next checks) is what counts."""
    if str(app.conf.broker_url).startswith("redis"):  # redis://, rediss://, redis+socket://
        return Check("queues", True, "Redis keeps a queue only while messages wait in it: see the workers below")
    missing = []
    with app.connection_for_write() as connection:
        for queue in queues:
            try:
                connection.default_channel.queue_declare(queue=queue, passive=True)
            except connection.channel_errors:
                missing.append(queue)
    declared = [queue for queue in queues if queue not in missing]
    detail = f"declared: {', '.join(declared) or 'none'}" + (f"; missing: {', '.join(missing)}" if missing else "")
    return Check(
        "queues",
        not missing,
        detail,
        "A worker declares its queues when it starts: start one for each (conveyor up does).",
    )


def check_flower(settings: Settings) -> Check:
    host = "127.0.0.1" if settings.flower_host in ("0.0.0.0", "::") else settings.flower_host  # noqa: S104
    url = f"http://{host}:{settings.flower_port}/healthcheck"
    try:
        urllib.request.urlopen(url, timeout=2)
    except (urllib.error.URLError, OSError) as exc:
        return Check(
            "flower",
            False,
            f"does not answer at {url}: {_reason(exc)}",
            "Start Flower (`celery -A worker.app flower`; conveyor up runs it), or set CONVEYOR_FLOWER_HOST "
            "and CONVEYOR_FLOWER_PORT to where it listens.",
        )
    return Check("flower", True, f"answers at {url}")


def check_settings(settings: Settings) -> Check:
    notes = [
        f"database {settings.resolved_database_url.split(':', 1)[0]}",
        f"broker {settings.resolved_broker_url.split(':', 1)[0]}",
        f"queues {', '.join(settings.queues)}",
    ]
    if settings.auth == "off":
        ok = settings.api_host in LOOPBACK
        notes.append("auth off" + ("" if ok else f" with the API on {settings.api_host}"))
        return Check(
            "settings", ok, "; ".join(notes), "CONVEYOR_AUTH=off is only for an API bound to loopback: turn auth on."
        )
    return Check("settings", True, "; ".join(notes))


def run_all(settings: Settings, engine: Engine) -> list[Check]:
    # a worker's broker timeouts, not a producer's: the broadcast waits INSPECT_TIMEOUT for the answers
    app = make_celery(settings, name="conveyor-doctor")
    broker = check_broker(app, settings)
    checks = [check_settings(settings), *check_database(engine, settings), broker]
    if broker.ok:
        checks.extend(check_workers(app, settings))
    checks.append(check_beat(engine, settings))
    checks.append(check_flower(settings))
    return checks


def _reason(exc: BaseException) -> str:
    """The error's first line, without the SQL or the traceback an OperationalError carries."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
