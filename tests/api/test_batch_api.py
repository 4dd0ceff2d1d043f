"""POST /v1/jobs:batch: one transaction, a result per item, per-item idempotency, whole-request schema errors."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import Engine, select

from api.app import create_app
from core.models import Job
from core.queue import RecordingPublisher
from core.registry import load_registry
from core.settings import Settings
from tests.api.test_jobs_api import PROBLEM, count_jobs
from tests.support.keys import admin_client


def echo(message: str, **fields: Any) -> dict[str, Any]:
    return {"type": "echo", "payload": {"message": message}, **fields}


def test_batch_accepts_valid_items_and_explains_the_rest(
    client: FlaskClient, app: APIFlask, publisher: RecordingPublisher
) -> None:
    jobs = [echo("a"), {"type": "nope", "payload": {}}, echo("b", priority=9), {"type": "echo", "payload": {}},
            echo("c", delay_seconds=60)]  # fmt: skip
    response = client.post("/v1/jobs:batch", json={"jobs": jobs})
    assert response.status_code == 200
    body = response.json
    assert (body["accepted"], body["existing"], body["rejected"]) == (3, 0, 2)
    assert [i["status"] for i in body["items"]] == [202, 422, 202, 422, 202]
    assert [i["index"] for i in body["items"]] == [0, 1, 2, 3, 4]
    assert body["items"][1]["error"]["type"] == "urn:conveyor:problem:unknown-job-type"
    assert body["items"][3]["error"]["errors"] == [{"field": "payload.message", "message": "Field required"}]
    assert body["items"][4]["job"]["status"] == "scheduled"
    assert count_jobs(app) == 3
    published = {str(w.job_id) for w in publisher.sent}
    assert published == {body["items"][0]["job"]["id"], body["items"][2]["job"]["id"]}  # not the scheduled one
    first = client.get(f"/v1/jobs/{body['items'][0]['job']['id']}/events").json["items"]
    assert [e["kind"] for e in first] == ["queued"]


def test_batch_idempotency_per_item(client: FlaskClient, app: APIFlask, publisher: RecordingPublisher) -> None:
    jobs = [echo(str(i), idempotency_key=f"k{i}") for i in range(5)]
    first = client.post("/v1/jobs:batch", json={"jobs": jobs}).json
    again = client.post("/v1/jobs:batch", json={"jobs": jobs}).json
    assert (first["accepted"], again["accepted"], again["existing"]) == (5, 0, 5)
    assert [i["job"]["id"] for i in again["items"]] == [i["job"]["id"] for i in first["items"]]
    clash = client.post("/v1/jobs:batch", json={"jobs": [echo("other", idempotency_key="k0")]}).json
    assert clash["items"][0]["status"] == 422
    assert clash["items"][0]["error"]["type"] == "urn:conveyor:problem:idempotency-key-reused"
    assert count_jobs(app) == 5 and len(publisher.sent) == 5


def test_batch_with_one_key_twice_makes_one_job(client: FlaskClient, app: APIFlask) -> None:
    jobs = [echo("x", unique_key="u"), echo("y", unique_key="u"), echo("z", idempotency_key="i"),
            echo("z", idempotency_key="i")]  # fmt: skip
    body = client.post("/v1/jobs:batch", json={"jobs": jobs}).json
    assert [i["status"] for i in body["items"]] == [202, 200, 202, 200]
    assert body["items"][0]["job"]["id"] == body["items"][1]["job"]["id"]
    assert count_jobs(app) == 2


def test_batch_of_1000(client: FlaskClient, app: APIFlask, publisher: RecordingPublisher) -> None:
    body = client.post("/v1/jobs:batch", json={"jobs": [echo(str(i)) for i in range(1000)]}).json
    assert body["accepted"] == 1000 and count_jobs(app) == 1000 and len(publisher.sent) == 1000


def test_malformed_batches_are_refused_whole(client: FlaskClient, app: APIFlask) -> None:
    cases = [
        ({"jobs": []}, 422),
        ({"jobs": [echo("x")] * 1001}, 422),
        ({"jobs": [echo("x"), echo("y", priority=99)]}, 422),
        ({"jobs": "echo"}, 422),
        ([echo("x")], 422),
    ]
    for payload, status in cases:
        response = client.post("/v1/jobs:batch", json=payload)
        assert response.status_code == status and response.content_type == PROBLEM, payload
    assert client.post("/v1/jobs:batch", data="x", content_type="text/plain").status_code == 415
    assert count_jobs(app) == 0


def test_batch_jobs_share_messages_and_their_rows_record_the_size(
    clean_db: Engine, database_url: str, tmp_path: Path, publisher: RecordingPublisher
) -> None:
    """120 echo jobs → messages of 50, 50, 20 (CONVEYOR_JOBS_PER_MESSAGE); a type with a soft time limit (Celery's
    applies to a whole message) and a single POST get a message per job."""
    registry = load_registry()
    registry.register(dataclasses.replace(registry.get("echo"), name="timed", soft_time_limit=5.0))
    settings = Settings(data_dir=tmp_path, database_url=database_url, jobs_per_message=50)
    app = create_app(settings, publisher=publisher, registry=registry)
    client = admin_client(app)
    jobs = [echo(str(i)) for i in range(120)] + [{"type": "timed", "payload": {"message": "t"}}] * 2
    body = client.post("/v1/jobs:batch", json={"jobs": jobs}).json
    assert body["accepted"] == 122
    client.post("/v1/jobs", json=echo("single"))
    assert [(m.first.type, len(m.wakeups)) for m in publisher.messages] == [
        ("echo", 50), ("echo", 50), ("echo", 20), ("timed", 1), ("timed", 1), ("echo", 1)]  # fmt: skip
    assert publisher.messages[0].time_limit == 50 * registry.get("echo").time_limit
    with app.extensions["conveyor"].sessions() as session:
        sizes = Counter(session.scalars(select(Job.message_jobs)))
    assert sizes == {50: 100, 20: 20, 1: 3}
    app.extensions["conveyor"].engine.dispose()
