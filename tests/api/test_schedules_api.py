"""Contract tests of /v1/schedules: every endpoint, every refusal as a problem body, and what reached the database."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from core.models import Job, Schedule
from core.queue import RecordingPublisher

PROBLEM = "application/problem+json"
NIGHTLY = {
    "name": "nightly-import",
    "type": "echo",
    "payload": {"message": "import {{ slot_previous_date }}"},
    "cron": "0 2 * * *",
    "timezone": "Europe/Berlin",
}


def create(client: FlaskClient, **fields: Any) -> Any:
    return client.post("/v1/schedules", json=NIGHTLY | fields)


def count(app: APIFlask, model: type[Job] | type[Schedule]) -> int:
    with app.extensions["conveyor"].sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_create_read_list(client: FlaskClient, app: APIFlask) -> None:
    response = create(client)
    assert response.status_code == 201
    body = response.json
    assert response.headers["Location"] == f"/v1/schedules/{body['id']}"
    assert body["misfire"] == "skip" and body["enabled"] is True and body["source"] == "api"
    assert len(body["upcoming"]) == 5 and body["upcoming"][0] == body["next_fire_at"]
    assert all(t.endswith(("T01:00:00Z", "T00:00:00Z")) for t in body["upcoming"])  # 02:00 Berlin, CET or CEST
    assert client.get(f"/v1/schedules/{body['id']}").json == body
    assert [s["name"] for s in client.get("/v1/schedules").json["items"]] == ["nightly-import"]
    assert count(app, Schedule) == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": "0 25 * * *"}, "cron"),
        ({"cron": "every night"}, "cron"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"cron": None, "interval_seconds": 0}, "interval_seconds"),
        ({"cron": None}, "body"),  # neither cron nor interval
        ({"interval_seconds": 60}, "body"),  # both
        ({"start_at": "2027-01-02T00:00:00Z", "end_at": "2027-01-01T00:00:00Z"}, "body"),
        ({"start_at": "2027-01-02T00:00:00"}, "start_at"),  # no offset
        ({"misfire": "sometimes"}, "misfire"),
        ({"name": ""}, "name"),
        ({"name": "has spaces"}, "name"),
        ({"unknown": 1}, "unknown"),
        ({"start_at": "9999-12-31T00:00:00Z"}, "start_at"),  # slot arithmetic would overflow
        ({"expires_after_seconds": 10**12}, "expires_after_seconds"),
        ({"end_at": "2001-01-01T00:00:00Z"}, "end_at"),  # would never fire
        ({"cron": "0 0 30 2 *"}, "cron"),  # never fires
    ],
)
def test_invalid_definitions_are_422_with_the_field(
    client: FlaskClient, app: APIFlask, fields: dict[str, Any], field: str
) -> None:
    response = create(client, **fields)
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert response.json["type"] == "urn:conveyor:problem:validation-error"
    fields_named = [e["field"] for e in response.json["errors"]]
    assert any(f == field or (field == "body" and f in ("", "body", "json")) for f in fields_named), fields_named
    assert count(app, Schedule) == 0


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"type": "no-such-type"}, "unknown-job-type"),
        ({"payload": {"message": 5}}, "validation-error"),  # fails the echo type's schema
        ({"payload": {}}, "validation-error"),
        ({"payload": {"message": "{{ tomorrow }}"}}, "validation-error"),  # unknown placeholder
        ({"queue": "nobody-consumes-this"}, "unknown-queue"),
    ],
)
def test_job_template_is_checked_at_creation(
    client: FlaskClient, app: APIFlask, fields: dict[str, Any], problem: str
) -> None:
    response = create(client, **fields)
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert response.json["type"] == f"urn:conveyor:problem:{problem}"
    assert count(app, Schedule) == 0


def test_name_taken_is_409(client: FlaskClient, app: APIFlask) -> None:
    create(client)
    response = create(client)
    assert response.status_code == 409 and response.json["type"] == "urn:conveyor:problem:schedule-name-taken"
    other = create(client, name="other").json
    renamed = client.patch(f"/v1/schedules/{other['id']}", json={"name": "nightly-import"})
    assert renamed.status_code == 409
    assert count(app, Schedule) == 2


def test_patch_merges_and_validates_the_whole(client: FlaskClient) -> None:
    schedule = create(client).json
    path = f"/v1/schedules/{schedule['id']}"
    to_interval = client.patch(path, json={"cron": None, "interval_seconds": 300})
    assert to_interval.status_code == 200
    assert to_interval.json["cron"] is None and to_interval.json["interval_seconds"] == 300
    assert to_interval.json["payload"] == NIGHTLY["payload"]  # untouched fields keep their value
    assert client.patch(path, json={"interval_seconds": None}).status_code == 422  # no cadence left
    assert client.patch(path, json={"cron": "61 * * * *", "interval_seconds": None}).status_code == 422
    assert client.patch(path, json={"payload": {"message": 1}}).status_code == 422
    assert client.patch(path, json={"bogus": 1}).status_code == 422
    assert client.patch(path, json={"interval_seconds": "soon"}).status_code == 422
    assert client.get(path).json["interval_seconds"] == 300  # refused edits changed nothing


def test_pause_resume(client: FlaskClient) -> None:
    schedule = create(client).json
    paused = client.post(f"/v1/schedules/{schedule['id']}/pause").json
    assert paused["enabled"] is False and paused["next_fire_at"] is None and paused["upcoming"] == []
    assert client.post(f"/v1/schedules/{schedule['id']}/pause").status_code == 200  # idempotent
    resumed = client.post(f"/v1/schedules/{schedule['id']}/resume").json
    assert resumed["enabled"] is True and resumed["next_fire_at"] == schedule["next_fire_at"]


def test_trigger_submits_and_publishes_a_job_now(
    client: FlaskClient, app: APIFlask, publisher: RecordingPublisher
) -> None:
    schedule = create(client).json
    response = client.post(f"/v1/schedules/{schedule['id']}/trigger")
    assert response.status_code == 202
    job = response.json
    assert job["schedule_id"] == schedule["id"] and job["status"] == "queued"
    assert job["payload"]["message"].startswith("import 20")  # rendered
    assert [str(w.job_id) for w in publisher.sent] == [job["id"]]
    runs = client.get(f"/v1/schedules/{schedule['id']}/runs").json
    assert [r["id"] for r in runs["items"]] == [job["id"]] and runs["next_cursor"] is None
    assert count(app, Job) == 1


def test_runs_paging_and_bad_cursor(client: FlaskClient) -> None:
    schedule = create(client).json
    ids = [client.post(f"/v1/schedules/{schedule['id']}/trigger").json["id"] for _ in range(3)]
    first = client.get(f"/v1/schedules/{schedule['id']}/runs?limit=2").json
    second = client.get(f"/v1/schedules/{schedule['id']}/runs?limit=2&cursor={first['next_cursor']}").json
    assert [r["id"] for r in first["items"] + second["items"]] == ids[::-1]
    bad = client.get(f"/v1/schedules/{schedule['id']}/runs?cursor=garbage")
    assert bad.status_code == 400 and bad.mimetype == PROBLEM
    assert client.get(f"/v1/schedules/{schedule['id']}/runs?limit=0").status_code == 422


def test_delete_keeps_jobs(client: FlaskClient, app: APIFlask) -> None:
    schedule = create(client).json
    job = client.post(f"/v1/schedules/{schedule['id']}/trigger").json
    assert client.delete(f"/v1/schedules/{schedule['id']}").status_code == 204
    assert client.get(f"/v1/schedules/{schedule['id']}").status_code == 404
    assert client.get(f"/v1/jobs/{job['id']}").json["schedule_id"] is None
    assert count(app, Job) == 1 and count(app, Schedule) == 0


@pytest.mark.parametrize("suffix", ["", "/pause", "/resume", "/trigger", "/runs"])
@pytest.mark.parametrize("schedule_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_unknown_schedule_is_404(client: FlaskClient, suffix: str, schedule_id: str) -> None:
    method = "GET" if suffix in ("", "/runs") else "POST"
    response = client.open(f"/v1/schedules/{schedule_id}{suffix}", method=method)
    assert response.status_code == 404 and response.mimetype == PROBLEM


def test_not_json_is_415(client: FlaskClient) -> None:
    response = client.post("/v1/schedules", data="name=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415 and response.mimetype == PROBLEM
