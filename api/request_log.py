"""Request ids and the API's one log line per request.

Every request gets a `request_id`: the client's `X-Request-ID` when it is a sane one, else a new one. It is bound to
the request's thread for every line logged while answering (core/logs.py), echoed in the response's X-Request-ID,
and recorded on the jobs the request submits, so the worker's lines of those jobs carry it too.
"""

from __future__ import annotations

import logging
import time

from apiflask import APIFlask
from flask import Response, g, request

from core import logs

log = logging.getLogger("conveyor.api")

REQUEST_ID_HEADER = "X-Request-ID"


def request_id() -> str | None:
    """The current request's id (None outside a request)."""
    given: str | None = g.get("request_id")
    return given


def install_request_log(app: APIFlask) -> None:
    app.before_request(_began)
    app.after_request(_answered)
    app.teardown_request(_ended)


def _began() -> None:
    logs.clear()  # a gthread worker's thread served other requests before this one
    g.request_id = logs.request_id_or_new(request.headers.get(REQUEST_ID_HEADER))
    g.request_began = time.perf_counter()
    logs.bind(request_id=g.request_id)


def _answered(response: Response) -> Response:
    began = g.get("request_began")
    if began is None:  # answered before _began ran (another before_request hook's answer comes after it)
        return response
    response.headers[REQUEST_ID_HEADER] = g.request_id
    if not log.isEnabledFor(logging.INFO):  # at WARNING, as production runs: not even the line's fields are built
        return response
    # The path without its query string: a read token travels as ?access_token= (a browser's EventSource), and a
    # secret never reaches a log.
    log.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "method": request.method,
            "path": request.path,
            "route": request.url_rule.rule if request.url_rule is not None else None,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - began) * 1000, 2),
            "remote_addr": request.remote_addr,
        },
    )
    return response


def _ended(_exc: BaseException | None = None) -> None:
    logs.clear()
