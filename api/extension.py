"""What the app holds for its requests: settings, the engine, the registry, the publisher; the request session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app, g, request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.group_commit import GroupCommit
from core.models import Job
from core.publish import messages_of, publish_committed
from core.queue import Message, Publisher
from core.quotas import UsageCache
from core.registry import Registry
from core.settings import Settings
from core.submit import JobRequest, Submitted

if TYPE_CHECKING:
    from api.auth import Authenticator


@dataclass
class Conveyor:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]  # for GET and HEAD: core.db.reading()
    registry: Registry
    publisher: Publisher
    broker_check: Callable[[], bool]
    submit_groups: GroupCommit[JobRequest, Submitted]  # POST /v1/jobs: concurrent submits share a commit
    authenticator: Authenticator
    usage_cache: UsageCache  # the tenants' unfinished jobs, as this process last counted them (core/quotas.py)


def conveyor() -> Conveyor:
    ext: Conveyor = current_app.extensions["conveyor"]
    return ext


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def db() -> Session:
    """The request's session, opened on first use and closed on teardown; views commit their own work. A GET only
    reads, so its session does not open a write transaction (see core.db.reading)."""
    if "db_session" not in g:
        ext = conveyor()
        g.db_session = (ext.read_sessions if request.method in SAFE_METHODS else ext.sessions)()
    session: Session = g.db_session
    return session


def close_db(_exc: BaseException | None = None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()


def publish(batch: list[Message]) -> None:
    """After the request's commit: publish, leaving what fails to the reconciler (core.publish)."""
    ext = conveyor()
    publish_committed(ext.publisher, ext.sessions, batch)


def publish_job(job: Job) -> None:
    """A job published alone, after its commit (a retry, a dataset's ingest, a schedule's trigger), if it is due."""
    publish(messages_of([job]))
