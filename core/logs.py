"""One logging configuration for every process (API, workers, beat): JSON lines in production, readable lines in a
terminal, and on every line the context its thread has bound (request_id, job_id, type, attempt, queue, worker).

Code logs through the standard library (`logging.getLogger`), as Celery, gunicorn and SQLAlchemy do; structlog's
ProcessorFormatter renders every record, theirs included, and adds the context from contextvars at the moment of
the call: `bound(...)` around a request or a job is all a caller does.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import IO, Any, Literal

import structlog
from structlog.contextvars import (
    bind_contextvars,
    bound_contextvars,
    clear_contextvars,
    get_contextvars,
    merge_contextvars,
)
from structlog.typing import Processor

from core import tracing

LogFormat = Literal["auto", "json", "console"]

# Celery's per-task lines ("Task jobs.echo[<celery id>] received / succeeded in 0.01s") name a Celery task id no
# Conveyor user knows; the executor's "job started" / "job succeeded" lines say the same with the job's context.
# Beat's "Sending due task" comes every second. Their warnings and errors still come through.
QUIET_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat")

HEADLINE = ("timestamp", "level", "logger", "message")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")  # what a client's X-Request-ID may be; else one is made

__all__ = ["bind", "bound", "clear", "configure", "context", "new_request_id", "request_id_or_new"]


def resolve(log_format: LogFormat, stream: IO[str]) -> Literal["json", "console"]:
    """`auto`: readable lines when a person watches (a terminal), JSON lines otherwise (a file, a pipe, a collector)."""
    if log_format != "auto":
        return log_format
    return "console" if stream.isatty() else "json"


def configure(level: str | int = "INFO", log_format: LogFormat = "auto", stream: IO[str] | None = None) -> None:
    """Render every record of the process through one handler on the root logger, replacing any there."""
    stream = stream or sys.stderr
    shared: list[Processor] = [
        merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _trace_ids,
    ]
    renderer: list[Processor]
    if resolve(log_format, stream) == "json":
        renderer = [
            # a traceback as text: structlog's dict form (and rich's) shows each frame's locals, which can hold secrets
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            _headline_first,
            structlog.processors.JSONRenderer(),
        ]
    else:
        renderer = [structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # structlog's own loggers (structlog.get_logger(), for a job type that prefers it) go through the same handler.
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def _trace_ids(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """trace_id and span_id of the current span, with CONVEYOR_TRACING on (core/tracing.py)."""
    if tracing.enabled():
        event.update(tracing.current_ids())
    return event


def _headline_first(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """timestamp, level, logger and the message lead each JSON line, for a person reading it raw; the context
    follows."""
    head = {key: event.pop(key) for key in HEADLINE if key in event}
    return head | dict(event)


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Every line logged in this thread (or task) inside the block carries these fields; the previous values come
    back after it. None values are left out."""
    with bound_contextvars(**{key: value for key, value in values.items() if value is not None}):
        yield


def bind(**values: Any) -> None:
    """Fields every later line of this thread carries, until `clear()` (the end of a request)."""
    bind_contextvars(**{key: value for key, value in values.items() if value is not None})


def context() -> dict[str, Any]:
    return get_contextvars()


def clear() -> None:
    clear_contextvars()


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_or_new(given: str | None) -> str:
    """A client's request id when it is one (1-128 letters, digits and `._:@/+=-`: nothing that could forge a log
    line or carry a secret's worth of text), else a new one."""
    if given is not None and REQUEST_ID.fullmatch(given):
        return given
    return new_request_id()
