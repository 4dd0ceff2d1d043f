"""GET /metrics (Prometheus), and the API's own request metrics: by route template, method and status."""

from __future__ import annotations

import time
from typing import Any

from apiflask import APIBlueprint, APIFlask
from flask import Response, g, request

from api.auth import requires
from core import metrics
from core.keys import Scope

bp = APIBlueprint("metrics", __name__, tag="Operations")


@bp.get("/metrics")
@requires(Scope.METRICS)
@bp.doc(
    summary="Prometheus metrics of every process sharing this API's metrics directory",
    description="Needs a key with the `metrics` scope (`conveyor keys create --scope metrics`): the numbers span "
    "every tenant, so admin keys do not have it. deploy/ has the Grafana dashboard and the alert rules.",
)
def scrape() -> Any:
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)


def install_request_metrics(app: APIFlask) -> None:
    app.before_request(_started)
    app.after_request(_answered)


def _started() -> None:
    g.metrics_started = time.perf_counter()


def _answered(response: Response) -> Response:
    started = g.get("metrics_started")
    if started is not None:
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        metrics.API_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        metrics.API_SECONDS.labels(route, request.method).observe(time.perf_counter() - started)
    return response
