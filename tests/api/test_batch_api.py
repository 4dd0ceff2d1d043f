"""POST /v1/jobs:batch: one transaction, a result per item, per-item idempotency, whole-request schema errors."""

from __future__ import annotations

from typing import Any

from apiflask import APIFlask
from flask.testing import FlaskClient

from core.queue import RecordingPublisher
from tests.api.test_jobs_api import PROBLEM, count_jobs


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
