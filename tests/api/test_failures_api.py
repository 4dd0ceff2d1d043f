"""/v1/failures on each backend: failed and retrying jobs grouped by cause, a group's jobs, and a group's bulk retry
and cancel, with the jobs run through the real executor (the broker is the only thing skipped)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select

from core.failures import fingerprint, normalised
from core.models import Job, JobEvent
from core.queue import RecordingPublisher
from core.registry import load_registry
from tests.api.conftest import KeyFactory
from tests.support.keys import client_with
from tests.support.worker import RunJob, job_runner


@pytest.fixture
def run_job(app: APIFlask) -> Iterator[RunJob]:
    with job_runner(app.extensions["conveyor"].settings, load_registry()) as run:
        yield run


def failing(client: FlaskClient, run_job: RunJob, message: str, *, count: int, max_attempts: int = 1,
            job_type: str = "fail") -> list[str]:  # fmt: skip
    """`count` jobs whose attempt raises `message` with the job's number in it, each run once."""
    made = []
    for n in range(count):
        payload = {"times": 5, "message": message.format(n=n * 7919)}
        response = client.post("/v1/jobs", json={"type": job_type, "payload": payload, "max_attempts": max_attempts})
        assert response.status_code == 202, response.json
        run_job(response.json["id"])
        made.append(response.json["id"])
    return made


def groups(client: FlaskClient, query: str = "") -> list[dict[str, Any]]:
    response = client.get(f"/v1/failures{query}")
    assert response.status_code == 200, response.json
    items: list[dict[str, Any]] = response.json["items"]
    return items


def test_thirty_failures_of_two_causes_make_two_groups(client: FlaskClient, run_job: RunJob) -> None:
    timeouts = failing(client, run_job, "order {n} timed out after 30.5 s", count=20)
    refused = failing(client, run_job, "card {n} refused by 10.0.0.7", count=10)
    found = groups(client)
    assert [(g["count"], g["failed"], g["retrying"]) for g in found] == [(10, 10, 0), (20, 20, 0)]  # newest first
    card, order = found
    assert card["message"] == "card <n> refused by <n>"
    assert order["message"] == "order <n> timed out after <n> s"
    assert (order["job_type"], order["error_type"], order["where"]) == (
        "fail",
        "DeliberateFailure",
        "tasks/fail.py:run",
    )
    assert order["sample"]["id"] == timeouts[-1] and card["sample"]["id"] == refused[-1]
    assert "Traceback" in card["sample"]["error"]["traceback"]
    assert order["first_seen"] <= order["last_seen"] <= card["first_seen"] <= card["last_seen"]
    # the row carries its group, computed once when the attempt failed
    job = client.get(f"/v1/jobs/{timeouts[0]}").json
    assert job["error_fingerprint"] == order["fingerprint"] == fingerprint("fail", job["error"])
    detail = client.get(f"/v1/failures/{order['fingerprint']}?limit=15")
    assert detail.status_code == 200 and detail.json["group"] == order
    listed = [j["id"] for j in detail.json["jobs"]]
    rest = client.get(f"/v1/failures/{order['fingerprint']}?limit=15&cursor={detail.json['next_cursor']}").json
    assert rest["next_cursor"] is None
    assert listed + [j["id"] for j in rest["jobs"]] == timeouts[::-1]  # the most recent failure first


def test_the_same_cause_in_another_job_type_or_place_is_another_group(client: FlaskClient, run_job: RunJob) -> None:
    error = {"type": "DeliberateFailure", "message": "order 12 timed out", "where": "tasks/fail.py:run"}
    assert fingerprint("fail", error) == fingerprint("fail", {**error, "message": "order 9999 timed out"})
    assert fingerprint("fail", error) != fingerprint("echo", error)
    assert fingerprint("fail", error) != fingerprint("fail", {**error, "where": "tasks/fail.py:other"})
    assert fingerprint("fail", error) != fingerprint("fail", {**error, "type": "TimeoutError"})
    assert normalised("job 0b6f5c0e-4f7e-4c1e-9a59-7b0a8f0f3b1d at 2026-12-07T03:04:05+00:00 hash deadbeef12") == (
        "job <id> at <time> hash <hex>"
    )
    assert normalised("utf8 sha256 s3 v2") == "utf8 sha256 s3 v2"  # names, not values


def test_retrying_a_group_requeues_its_failed_jobs_only(
    client: FlaskClient, run_job: RunJob, publisher: RecordingPublisher
) -> None:
    timeouts = failing(client, run_job, "order {n} timed out", count=6)
    others = failing(client, run_job, "card {n} refused", count=2)
    order = next(g for g in groups(client) if g["message"].startswith("order"))
    sent = len(publisher.sent)
    partial = client.post(f"/v1/failures/{order['fingerprint']}/retry", json={"limit": 4})
    assert partial.status_code == 200, partial.json
    assert partial.json == {"retried": 4, "more": True, "left_to_workflows": 0}
    rest = client.post(f"/v1/failures/{order['fingerprint']}/retry", json={})
    assert rest.json == {"retried": 2, "more": False, "left_to_workflows": 0}
    assert {client.get(f"/v1/jobs/{j}").json["status"] for j in timeouts} == {"queued"}
    assert {client.get(f"/v1/jobs/{j}").json["status"] for j in others} == {"failed"}
    assert sorted(str(wakeup.job_id) for wakeup in publisher.sent[sent:]) == sorted(timeouts)
    events = client.get(f"/v1/jobs/{timeouts[0]}/events").json["items"]
    assert events[-1]["kind"] == "queued" and events[-1]["detail"]["by"] == "bulk retry"
    # the group is empty now: its jobs run again, and fail again into the same group
    assert client.get(f"/v1/failures/{order['fingerprint']}").status_code == 404
    assert [g["message"] for g in groups(client)] == ["card <n> refused"]
    run_job(timeouts[0])
    again = client.get(f"/v1/failures/{order['fingerprint']}").json
    assert again["group"]["count"] == 1 and [j["id"] for j in again["jobs"]] == [timeouts[0]]


def test_cancelling_a_group_stops_its_retrying_jobs(client: FlaskClient, run_job: RunJob) -> None:
    retrying = failing(client, run_job, "upstream {n} is down", count=3, max_attempts=5)
    given_up = failing(client, run_job, "upstream {n} is down", count=1, max_attempts=1)
    [group] = groups(client)
    assert (group["count"], group["failed"], group["retrying"]) == (4, 1, 3)
    assert [g["count"] for g in groups(client, "?status=retrying")] == [3]
    cancelled = client.post(f"/v1/failures/{group['fingerprint']}/cancel", json={})
    assert cancelled.status_code == 200 and cancelled.json == {"cancelled": 3, "more": False}
    for job_id in retrying:
        job = client.get(f"/v1/jobs/{job_id}").json
        assert job["status"] == "cancelled" and job["error"]["message"].startswith("upstream")  # its cause stays
        last = client.get(f"/v1/jobs/{job_id}/events").json["items"][-1]
        assert (last["kind"], last["detail"]["from"]) == ("cancelled", "retrying")
        assert last["detail"]["by"] == f"failure group {group['fingerprint']}"
    assert client.get(f"/v1/jobs/{given_up[0]}").json["status"] == "failed"
    [left] = groups(client)
    assert (left["count"], left["failed"], left["retrying"]) == (1, 1, 0)
    assert client.post(f"/v1/failures/{group['fingerprint']}/cancel", json={}).json == {"cancelled": 0, "more": False}


def test_filters_and_pages(client: FlaskClient, run_job: RunJob) -> None:
    failing(client, run_job, "alpha {n}", count=1)
    failing(client, run_job, "beta {n}", count=1)
    failing(client, run_job, "gamma {n}", count=1, max_attempts=3)
    first = client.get("/v1/failures?limit=2").json
    assert [g["message"] for g in first["items"]] == ["gamma <n>", "beta <n>"]
    second = client.get(f"/v1/failures?limit=2&cursor={first['next_cursor']}").json
    assert [g["message"] for g in second["items"]] == ["alpha <n>"] and second["next_cursor"] is None
    assert [g["message"] for g in groups(client, "?status=failed")] == ["beta <n>", "alpha <n>"]
    assert groups(client, "?type=echo") == [] and len(groups(client, "?type=fail&queue=default")) == 3
    later = client.get("/v1/jobs?limit=1").json["items"][0]["failed_at"]
    assert [g["message"] for g in groups(client, f"?since={later.replace('+', '%2B')}")] == ["gamma <n>"]


def test_a_workflows_failed_job_is_left_to_its_workflow(client: FlaskClient, run_job: RunJob) -> None:
    flow = client.post(
        "/v1/workflows",
        json={
            "name": "flow",
            "steps": [
                {"name": "boom", "type": "fail", "payload": {"times": 5, "message": "step broke"}, "max_attempts": 1}
            ],
        },
    )
    assert flow.status_code == 202, flow.json  # fmt: skip
    run_job(flow.json["steps"][0]["job_id"])
    [group] = groups(client)
    retried = client.post(f"/v1/failures/{group['fingerprint']}/retry", json={})
    assert retried.json == {"retried": 0, "more": False, "left_to_workflows": 1}
    assert client.get(f"/v1/jobs/{flow.json['steps'][0]['job_id']}").json["status"] == "failed"


@pytest.mark.parametrize(
    ("method", "path", "status", "problem"),
    [
        ("GET", "/v1/failures/nothex", 404, "not-found"),
        ("GET", "/v1/failures/0123456789ABCDEF", 404, "not-found"),
        ("GET", "/v1/failures/0123456789abcdef", 404, "not-found"),
        ("POST", "/v1/failures/0123456789abcdef/retry", 404, "not-found"),
        ("POST", "/v1/failures/0123456789abcdef/cancel", 404, "not-found"),
        ("GET", "/v1/failures?cursor=nope", 400, "bad-cursor"),
        ("GET", "/v1/failures?status=running", 422, "validation-error"),
        ("GET", "/v1/failures?limit=0", 422, "validation-error"),
        ("GET", "/v1/failures?since=yesterday", 422, "validation-error"),
        ("GET", "/v1/failures?colour=red", 422, "validation-error"),
    ],
)
def test_bad_requests(client: FlaskClient, method: str, path: str, status: int, problem: str) -> None:
    response = client.open(path, method=method, json={} if method == "POST" else None)
    assert response.status_code == status, response.json
    assert response.mimetype == "application/problem+json"
    assert response.json["type"] == f"urn:conveyor:problem:{problem}"


def test_bad_action_bodies(client: FlaskClient, run_job: RunJob) -> None:
    failing(client, run_job, "x {n}", count=1)
    [group] = groups(client)
    for body in ({"limit": 0}, {"limit": 10_001}, {"limit": "many"}, {"other": 1}):
        response = client.post(f"/v1/failures/{group['fingerprint']}/retry", json=body)
        assert response.status_code == 422 and response.mimetype == "application/problem+json", body
    assert client.get("/v1/jobs?status=failed").json["items"]  # nothing was retried


def test_reading_needs_jobs_read_and_acting_needs_admin(
    app: APIFlask, make_key: KeyFactory, client: FlaskClient, run_job: RunJob
) -> None:
    failing(client, run_job, "x {n}", count=1)
    [group] = groups(client)
    reader = client_with(app, make_key(scopes=["jobs:read", "jobs:write"]))
    assert reader.get("/v1/failures").status_code == 200
    assert reader.get(f"/v1/failures/{group['fingerprint']}").status_code == 200
    for action in ("retry", "cancel"):
        refused = reader.post(f"/v1/failures/{group['fingerprint']}/{action}", json={})
        assert refused.status_code == 403 and refused.json["type"] == "urn:conveyor:problem:forbidden"
    outsider = client_with(app, make_key(scopes=["datasets:read"]))
    assert outsider.get("/v1/failures").status_code == 403


def test_a_lost_worker_is_a_failure_group_too(app: APIFlask, client: FlaskClient) -> None:
    """The reconciler records an expired lease as a failed attempt: it is fingerprinted like a handler's error."""
    from core.reconcile import release_jobs_of

    job_id = client.post("/v1/jobs", json={"type": "sleep", "payload": {"seconds": 1}}).json["id"]
    sessions = app.extensions["conveyor"].sessions
    with sessions() as session, session.begin():
        job = session.get_one(Job, uuid.UUID(job_id))
        job.status, job.attempt, job.worker = "running", 1, "jobs@host-1:4242"
    with sessions() as session, session.begin():
        assert release_jobs_of(session, ["jobs@host-1:"], backoff_cap=1.0) == 1
    [group] = groups(client)
    assert (group["error_type"], group["retrying"], group["where"]) == ("WorkerStopped", 1, None)
    assert group["message"] == "the worker jobs@host-<n>:<n> was stopped before the job finished"
    with sessions() as session:
        kinds = session.scalars(select(JobEvent.kind).where(JobEvent.job_id == uuid.UUID(job_id))).all()
    assert kinds[-2:] == ["lease_expired", "retrying"]
