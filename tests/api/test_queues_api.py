"""/v1/queues and the queue operations over HTTP: what GET shows (pause, depth, the last minute's throughput and
failure ratio), the admin scope, 404 for an unknown queue, 422 for bad bodies, and each operation's answer."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIFlask
from flask.testing import FlaskClient

from core.queue import RecordingPublisher
from tests.api.conftest import KeyFactory
from tests.support.keys import client_with
from tests.support.worker import job_runner


def queue(client: FlaskClient, name: str = "default") -> dict[str, Any]:
    [found] = [q for q in client.get("/v1/queues").json["items"] if q["name"] == name]
    return found


def test_a_queue_shows_its_depth_and_the_last_minutes_throughput_and_failures(
    app: APIFlask, client: FlaskClient, registry: Any
) -> None:
    empty = queue(client)
    assert (empty["paused"], empty["depth"], empty["succeeded_last_minute"], empty["failure_ratio"]) == (
        None, 0, 0, None)  # fmt: skip
    ok = [client.post("/v1/jobs", json={"type": "echo", "payload": {"message": str(i)}}).json["id"] for i in range(3)]
    bad = client.post("/v1/jobs", json={"type": "fail", "payload": {"times": 9}, "max_attempts": 1}).json["id"]
    client.post("/v1/jobs", json={"type": "echo", "payload": {"message": "waits"}})
    with job_runner(app.extensions["conveyor"].settings, registry) as run:
        for job_id in [*ok, bad]:
            run(job_id)
    shown = queue(client)
    # the unfinished jobs only: the finished ones are the last minute's figures below
    assert shown["counts"] == {"scheduled": 0, "queued": 1, "running": 0, "retrying": 0} and shown["depth"] == 1
    assert (shown["succeeded_last_minute"], shown["failed_last_minute"], shown["failure_ratio"]) == (3, 1, 0.25)
    assert shown["oldest_queued_age_seconds"] >= 0


def test_queue_operations_need_an_admin_key(app: APIFlask, make_key: KeyFactory) -> None:
    writer = client_with(app, make_key(scopes=["jobs:read", "jobs:write"]))
    for path, body in (("/v1/queues/default/pause", {}), ("/v1/queues/default/resume", None),
                       ("/v1/queues/default/drain", {"reason": "x"}), ("/v1/jobs:retry", {})):  # fmt: skip
        response = writer.post(path, json=body)
        assert response.status_code == 403, path
        assert "admin" in response.json["detail"]
        assert app.test_client().post(path, json=body).status_code == 401


def test_pause_and_resume_show_in_the_queue(client: FlaskClient) -> None:
    paused = client.post("/v1/queues/default/pause", json={"reason": "database migration"})
    assert paused.status_code == 200
    assert paused.json["name"] == "default"
    assert paused.json["paused"]["scope"] == "tenant" and paused.json["paused"]["reason"] == "database migration"
    assert queue(client)["paused"] == paused.json["paused"]
    assert queue(client, "webhooks")["paused"] is None
    assert client.post("/v1/queues/default/pause").status_code == 200  # no body: no reason, the first one stays
    assert queue(client)["paused"]["reason"] == "database migration"
    resumed = client.post("/v1/queues/default/resume")
    assert resumed.status_code == 200 and resumed.json["paused"] is None
    assert client.post("/v1/queues/default/resume").json["paused"] is None  # resuming twice is harmless


def test_an_unknown_queue_is_a_404_and_bad_bodies_are_422(client: FlaskClient) -> None:
    for path in ("/v1/queues/nope/pause", "/v1/queues/nope/resume", "/v1/queues/nope/drain"):
        response = client.post(path, json={"reason": "x"})
        assert response.status_code == 404 and response.mimetype == "application/problem+json", path
        assert "Known queues: default, webhooks" in response.json["detail"]
    bad = [
        ("/v1/queues/default/pause", {"reason": "x" * 501}),
        ("/v1/queues/default/pause", {"why": "x"}),
        ("/v1/queues/default/drain", {}),
        ("/v1/queues/default/drain", {"reason": ""}),
        ("/v1/jobs:retry", {"limit": 0}),
        ("/v1/jobs:retry", {"limit": 10_001}),
        ("/v1/jobs:retry", {"failed_after": "yesterday"}),
        ("/v1/jobs:retry", {"failed_after": "2026-01-01T00:00:00"}),  # no time zone
        ("/v1/jobs:retry", {"queue": "no spaces"}),
    ]
    for path, body in bad:
        response = client.post(path, json=body)
        assert response.status_code == 422 and response.mimetype == "application/problem+json", (path, body)
        assert response.json["errors"], (path, body)


def test_drain_cancels_pending_jobs_and_says_how_many(client: FlaskClient) -> None:
    ids = [client.post("/v1/jobs", json={"type": "echo", "payload": {"message": "m"}}).json["id"] for _ in range(3)]
    later = client.post("/v1/jobs", json={"type": "echo", "payload": {"message": "m"}, "delay_seconds": 600})
    drained = client.post("/v1/queues/default/drain", json={"reason": "poisoned payloads"})
    assert drained.status_code == 200 and drained.json == {"cancelled": 4}
    for job_id in [*ids, later.json["id"]]:
        job = client.get(f"/v1/jobs/{job_id}").json
        assert job["status"] == "cancelled" and job["error"] == {"type": "Drained", "message": "poisoned payloads"}
    assert client.get(f"/v1/jobs/{ids[0]}/events").json["items"][-1]["detail"]["reason"] == "poisoned payloads"


def test_a_bulk_retry_requeues_the_matching_failed_jobs_and_publishes_them(
    app: APIFlask, client: FlaskClient, publisher: RecordingPublisher, registry: Any
) -> None:
    failing = [client.post("/v1/jobs", json={"type": "fail", "payload": {"times": 1}, "max_attempts": 1}).json["id"]
               for _ in range(3)]  # fmt: skip
    with job_runner(app.extensions["conveyor"].settings, registry) as run:
        for job_id in failing:
            assert run(job_id).status == "failed"
    sent_before = len(publisher.sent)
    none = client.post("/v1/jobs:retry", json={"error_type": "TimeoutError"})
    assert none.json == {"retried": 0, "more": False}
    first = client.post("/v1/jobs:retry", json={"type": "fail", "error_type": "DeliberateFailure", "limit": 2})
    assert first.status_code == 200 and first.json == {"retried": 2, "more": True}
    assert client.post("/v1/jobs:retry", json={"queue": "default"}).json == {"retried": 1, "more": False}
    assert {w.job_id for w in publisher.sent[sent_before:]} == {uuid.UUID(i) for i in failing}
    with job_runner(app.extensions["conveyor"].settings, registry) as run:
        assert [run(job_id).status for job_id in failing] == ["succeeded"] * 3  # attempt 2 succeeds
