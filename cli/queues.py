"""`conveyor queues`: an operator's queue operations, straight on the database (like `conveyor keys`: whoever can
reach the database runs Conveyor), for every tenant unless --tenant names one. core/queue_ops.py does the work; the
API offers the same to a tenant's admin key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
from sqlalchemy import select

from core.db import Sessions, make_engine
from core.models import ALL_TENANTS, QueuePause
from core.publish import process_sessions
from core.queries import backlog
from core.queue import CeleryPublisher, make_celery
from core.queue_ops import (
    RETRY_LIMIT_MAX,
    FailedFilter,
    check_queue,
    drain_queue,
    pause_queue,
    resume_queue,
    retry_failed,
)
from core.registry import load_registry
from core.settings import Settings

CLI_ACTOR = "cli"

tenant_option = click.option(
    "--tenant", default=ALL_TENANTS, show_default="every tenant", help="Act on this tenant's jobs only."
)


def _publisher(settings: Settings) -> CeleryPublisher:
    return CeleryPublisher(make_celery(settings, name="conveyor-cli", producer=True), lean=settings.celery_lean)


def _sessions(settings: Settings) -> Sessions:
    """A drain may finish a workflow's jobs, whose next steps it then releases and publishes (ADR 0014)."""
    engine = make_engine(settings.resolved_database_url)
    return process_sessions(engine, settings, load_registry(), _publisher(settings))


def _known(queue: str, settings: Settings) -> None:
    try:
        check_queue(queue, settings.queues)
    except Exception as exc:
        raise click.ClickException(str(exc)) from None


@click.group("queues")
def queues() -> None:
    """Queues: list, pause, resume, drain, retry-failed (every tenant's jobs unless --tenant)."""


@queues.command("list")
def list_queues() -> None:
    """Each queue's pause and backlog (unfinished jobs by status, every tenant) and the oldest due job's wait."""
    settings = Settings()
    sessions = _sessions(settings)
    with sessions() as session:
        held = {(p.queue, p.tenant_id): p for p in session.scalars(select(QueuePause))}
        rows = backlog(session)
    now = datetime.now(UTC)
    for queue in settings.queues:
        counts = {row.status: row.jobs for row in rows if row.queue == queue}
        oldest = min((row.oldest_due for row in rows if row.queue == queue and row.oldest_due), default=None)
        waiting = f"oldest due {(now - oldest).total_seconds():.0f}s ago" if oldest else "nothing waiting"
        states = [f"paused for {'every tenant' if tenant == ALL_TENANTS else tenant}"
                  + (f" ({pause.reason})" if pause.reason else "")
                  for (name, tenant), pause in sorted(held.items()) if name == queue]  # fmt: skip
        backlog_text = ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "empty"
        click.echo(f"{queue:<16} {'; '.join(states) or 'running':<40} {backlog_text:<40} {waiting}")


@queues.command()
@click.argument("queue")
@click.option("--reason", help="Why, for whoever looks at it next (shown by GET /v1/queues).")
@tenant_option
def pause(queue: str, reason: str | None, tenant: str) -> None:
    """Stop workers claiming the queue's jobs (from the next claim; running jobs finish) until `resume`."""
    settings = Settings()
    _known(queue, settings)
    with _sessions(settings)() as session, session.begin():
        pause_queue(session, queue, tenant_id=tenant, actor=CLI_ACTOR, reason=reason)
    who = "every tenant" if tenant == ALL_TENANTS else f"tenant {tenant}"
    click.echo(f"paused {queue} for {who}; `conveyor queues resume {queue}` lifts it")


@queues.command()
@click.argument("queue")
@tenant_option
def resume(queue: str, tenant: str) -> None:
    """Lift a pause made with the same --tenant and publish its waiting jobs again."""
    settings = Settings()
    _known(queue, settings)
    sessions = _sessions(settings)
    with sessions() as session:
        held = session.get(QueuePause, (queue, tenant))
    if held is None:
        raise click.ClickException(f"{queue} is not paused for {tenant!r} (`conveyor queues list` shows pauses)")
    published = resume_queue(sessions, _publisher(settings), queue, tenant_id=tenant, registry=load_registry(),
                             jobs_per_message=settings.jobs_per_message)  # fmt: skip
    click.echo(f"resumed {queue}; {published} waiting jobs published again")


@queues.command()
@click.argument("queue")
@click.option("--reason", required=True, help="Recorded on each cancelled job.")
@tenant_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def drain(queue: str, reason: str, tenant: str, yes: bool) -> None:
    """Cancel the queue's pending jobs (queued, scheduled, retrying); running jobs finish."""
    settings = Settings()
    _known(queue, settings)
    who = "every tenant's" if tenant == ALL_TENANTS else f"tenant {tenant}'s"
    if not yes:
        click.confirm(f"Cancel {who} pending jobs in {queue}?", abort=True)
    cancelled = drain_queue(_sessions(settings), queue, tenant_id=tenant, actor=CLI_ACTOR, reason=reason)
    click.echo(f"cancelled {cancelled} pending jobs in {queue}")


@queues.command("retry-failed")
@click.option("--queue", help="Only jobs of this queue.")
@click.option("--type", "job_type", help="Only jobs of this type.")
@click.option("--error-type", help="Only jobs whose error is of this type, e.g. TimeoutError.")
@click.option("--since", type=click.DateTime(), help="Failed at or after this UTC time.")
@click.option("--until", type=click.DateTime(), help="Failed before this UTC time.")
@click.option("--last", type=float, help="Failed in the last this many hours.")
@click.option("--limit", type=click.IntRange(1, RETRY_LIMIT_MAX), default=1000, show_default=True)
@tenant_option
def retry_failed_command(
    queue: str | None, job_type: str | None, error_type: str | None, since: datetime | None, until: datetime | None,
    last: float | None, limit: int, tenant: str,
) -> None:  # fmt: skip
    """Queue failed jobs matching every given filter again, one more attempt each, oldest failure first."""
    settings = Settings()
    if queue is not None:
        _known(queue, settings)
    after = since.replace(tzinfo=UTC) if since else None
    if last is not None:
        after = datetime.now(UTC) - timedelta(hours=last)
    matching = FailedFilter(tenant, type=job_type, queue=queue, error_type=error_type, failed_after=after,
                            failed_before=until.replace(tzinfo=UTC) if until else None)  # fmt: skip
    report = retry_failed(_sessions(settings), _publisher(settings), matching, limit=limit, actor=CLI_ACTOR)
    more = "; more match: run it again" if report.more else ""
    click.echo(f"retried {report.retried} failed jobs{more}")
