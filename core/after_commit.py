"""Messages a session publishes itself once its transaction commits: the jobs made deep inside a unit of work (a
workflow's released steps, a handler's ctx.enqueue), whose caller commits without knowing of them. A process says how
it publishes in its sessions' info (`session_publisher`); what a rolled-back transaction made is never published."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from core.queue import Message

PUBLISHER = "conveyor_publisher"  # session.info: Callable[[list[Message]], object]
AFTER_COMMIT = "conveyor_after_commit"  # session.info: the messages its transaction will publish once committed


def session_publisher(publish: Callable[[list[Message]], object]) -> dict[str, Any]:
    """The part of a process's sessions' `info` (core.db.make_sessionmaker) that publishes after their commits."""
    return {PUBLISHER: publish}


def publish_after_commit(session: Session, batch: Sequence[Message]) -> None:
    """Publish these messages once the session's transaction commits (nothing, if it rolls back)."""
    if batch:
        if PUBLISHER not in session.info:
            raise RuntimeError("jobs made in a session that cannot publish them (core.after_commit.session_publisher)")
        session.info.setdefault(AFTER_COMMIT, []).extend(batch)


@event.listens_for(Session, "after_commit")
def _publish_committed(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: the outer transaction may still roll back
        return
    batch = session.info.pop(AFTER_COMMIT, None)
    if batch:
        session.info[PUBLISHER](batch)


@event.listens_for(Session, "after_transaction_end")
def _discard_uncommitted(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop(AFTER_COMMIT, None)
