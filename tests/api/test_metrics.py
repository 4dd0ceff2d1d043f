"""GET /metrics and what the API counts: a `metrics` key reads it (an admin key does not), submits count once their
transaction commits, and requests are labelled by route template."""

from __future__ import annotations

from apiflask import APIFlask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from core import metrics
from tests.api.conftest import KeyFactory
from tests.support.keys import client_with


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_need_the_metrics_scope(app: APIFlask, client: FlaskClient, make_key: KeyFactory) -> None:
    assert app.test_client().get("/metrics").status_code == 401
    assert client.get("/metrics").status_code == 403  # admin of one tenant: not every tenant's numbers
    response = client_with(app, make_key(scopes=["metrics"])).get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.get_data(as_text=True))}
    assert {"conveyor_jobs_submitted", "conveyor_api_requests", "conveyor_api_request_seconds"} <= names


def test_a_submit_counts_once_committed_and_a_batch_by_type(client: FlaskClient) -> None:
    before = value("conveyor_jobs_submitted_total", type="echo", queue="default")
    fails_before = value("conveyor_jobs_submitted_total", type="fail", queue="default")
    assert client.post("/v1/jobs", json={"type": "echo", "payload": {"message": "m"}}).status_code == 202
    batch = [{"type": "echo", "payload": {"message": "b"}}] * 3 + [{"type": "fail", "payload": {"times": 1}}] * 2
    assert client.post("/v1/jobs:batch", json={"jobs": batch}).status_code == 200
    assert value("conveyor_jobs_submitted_total", type="echo", queue="default") == before + 4
    assert value("conveyor_jobs_submitted_total", type="fail", queue="default") == fails_before + 2
    # refused (422) and replayed (same Idempotency-Key) submits make no job and count nothing
    assert client.post("/v1/jobs", json={"type": "echo", "payload": {}}).status_code == 422
    headers = {"Idempotency-Key": "once"}
    for expected in (202, 200):
        body = {"type": "echo", "payload": {"message": "k"}}
        assert client.post("/v1/jobs", json=body, headers=headers).status_code == expected
    assert value("conveyor_jobs_submitted_total", type="echo", queue="default") == before + 5


def test_counts_of_a_rolled_back_transaction_are_dropped(app: APIFlask) -> None:
    sessions = app.extensions["conveyor"].sessions
    before = value("conveyor_jobs_cancelled_total", type="probe", queue="q")
    with sessions() as session:
        session.begin()
        metrics.count(session, metrics.CANCELLED, "probe", "q")
        session.rollback()
        with session.begin():
            with session.begin_nested():  # a savepoint's release is not the commit
                metrics.count(session, metrics.CANCELLED, "probe", "q", amount=2)
            assert value("conveyor_jobs_cancelled_total", type="probe", queue="q") == before
    assert value("conveyor_jobs_cancelled_total", type="probe", queue="q") == before + 2


def test_requests_are_counted_by_route_template(client: FlaskClient) -> None:
    job_id = client.post("/v1/jobs", json={"type": "echo", "payload": {"message": "r"}}).get_json()["id"]
    labels = {"route": "/v1/jobs/<job_id>", "method": "GET"}
    before = value("conveyor_api_requests_total", status="200", **labels)
    missing = value("conveyor_api_requests_total", status="404", **labels)
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200
    assert client.get("/v1/jobs/00000000-0000-0000-0000-000000000000").status_code == 404
    assert value("conveyor_api_requests_total", status="200", **labels) == before + 1
    assert value("conveyor_api_requests_total", status="404", **labels) == missing + 1
    assert value("conveyor_api_request_seconds_count", **labels) >= 2
