"""Contract tests of /v1/jobs: statuses, headers, bodies, and what reached the database and the publisher."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from core.jobs import claim_job, complete_job, fail_attempt
from core.models import Job
from core.queue import RecordingPublisher
from core.types import utcnow

PROBLEM = "application/problem+json"


def submit(client: FlaskClient, body: dict[str, Any] | None = None, **headers: str) -> Any:
    return client.post("/v1/jobs", json=body or {"type": "echo", "payload": {"message": "hi"}}, headers=headers)


def count_jobs(app: APIFlask) -> int:
    with app.extensions["conveyor"].sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def run_to_end(app: APIFlask, job_id: str, *, fail: bool = False) -> None:
    """Play the worker's part on the real ledger: claim, then complete or fail for good."""
    with app.extensions["conveyor"].sessions() as session:
        claimed = claim_job(session, job_id=uuid.UUID(job_id), worker="w", lease_seconds=30)
        assert claimed is not None
        if fail:
            error = {"type": "Boom", "message": "broken"}
            fail_attempt(session, job_id=claimed.id, attempt=1, worker="w", error=error, retryable=False,
                         backoff=1, backoff_cap=1)  # fmt: skip
        else:
            complete_job(session, job_id=claimed.id, attempt=1, worker="w", data={"message": "hi"})
        session.commit()


def test_submit_accepts_commits_and_publishes(
    client: FlaskClient, app: APIFlask, publisher: RecordingPublisher
) -> None:
    response = submit(client)
    assert response.status_code == 202
    job = response.json
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["payload"] == {"message": "hi"} and job["max_attempts"] == 3
    assert [str(w.job_id) for w in publisher.sent] == [job["id"]]
    assert publisher.sent[0].task_name == "jobs.echo" and publisher.sent[0].queue == "default"
    assert count_jobs(app) == 1


def test_submit_with_delay_is_scheduled_and_not_published(client: FlaskClient, publisher: RecordingPublisher) -> None:
    response = submit(client, {"type": "echo", "payload": {"message": "later"}, "delay_seconds": 60})
    assert response.status_code == 202
    job = response.json
    assert job["status"] == "scheduled"
    run_at = datetime.fromisoformat(job["run_at"])
    assert timedelta(seconds=55) < run_at - datetime.now(UTC) <= timedelta(seconds=60)
    assert publisher.sent == []


def test_publish_failure_still_accepts_and_leaves_row_for_reconciler(
    client: FlaskClient, app: APIFlask, publisher: RecordingPublisher
) -> None:
    publisher.fail = True
    response = submit(client)
    assert response.status_code == 202
    with app.extensions["conveyor"].sessions() as session:
        job = session.get(Job, uuid.UUID(response.json["id"]))
        assert job is not None and job.status == "queued" and job.published_at is None


def test_idempotency_key(client: FlaskClient, app: APIFlask, publisher: RecordingPublisher) -> None:
    first = submit(client, None, **{"Idempotency-Key": "order-42"})
    again = submit(client, None, **{"Idempotency-Key": "order-42"})
    other = submit(client, {"type": "echo", "payload": {"message": "different"}}, **{"Idempotency-Key": "order-42"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json["id"] == first.json["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert other.status_code == 422 and other.content_type == PROBLEM
    assert other.json["type"] == "urn:conveyor:problem:idempotency-key-reused"
    assert count_jobs(app) == 1 and len(publisher.sent) == 1


def test_get_job_etag_and_304(client: FlaskClient) -> None:
    job_id = submit(client).json["id"]
    first = client.get(f"/v1/jobs/{job_id}")
    assert first.status_code == 200 and first.json["id"] == job_id
    etag = first.headers["ETag"]
    unchanged = client.get(f"/v1/jobs/{job_id}", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.data == b""
    client.post(f"/v1/jobs/{job_id}/cancel")
    changed = client.get(f"/v1/jobs/{job_id}", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.json["status"] == "cancelled"


def test_list_paginates_newest_first_without_gaps(client: FlaskClient) -> None:
    ids = [submit(client, {"type": "echo", "payload": {"message": str(i)}}).json["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        response = client.get("/v1/jobs", query_string={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200
        seen += [j["id"] for j in response.json["items"]]
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_list_filters(client: FlaskClient, app: APIFlask) -> None:
    echo = submit(client).json["id"]
    sleep = submit(client, {"type": "sleep", "payload": {"seconds": 1}}).json["id"]
    client.post(f"/v1/jobs/{sleep}/cancel")

    def ids(**query: str) -> list[str]:
        return [j["id"] for j in client.get("/v1/jobs", query_string=query).json["items"]]

    assert ids(type="echo") == [echo]
    assert ids(status="cancelled") == [sleep]
    assert sorted(ids(status="queued,cancelled")) == sorted([echo, sleep])
    assert ids(queue="default", type="sleep") == [sleep]
    future = (utcnow() + timedelta(hours=1)).isoformat()
    assert ids(created_after=future) == []
    assert len(ids(created_before=future)) == 2


def test_events_and_result_after_success(client: FlaskClient, app: APIFlask) -> None:
    job_id = submit(client).json["id"]
    not_yet = client.get(f"/v1/jobs/{job_id}/result")
    assert not_yet.status_code == 409 and not_yet.json["type"] == "urn:conveyor:problem:result-not-ready"
    run_to_end(app, job_id)
    result = client.get(f"/v1/jobs/{job_id}/result")
    assert result.status_code == 200 and result.json["data"] == {"message": "hi"}
    events = client.get(f"/v1/jobs/{job_id}/events").json["items"]
    assert [e["kind"] for e in events] == ["queued", "running", "succeeded"]
    assert [e["attempt"] for e in events] == [0, 1, 1]


def test_cancel_queued_then_finished_conflicts(client: FlaskClient, app: APIFlask) -> None:
    job_id = submit(client).json["id"]
    cancelled = client.post(f"/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200  # idempotent
    done = submit(client).json["id"]
    run_to_end(app, done)
    conflict = client.post(f"/v1/jobs/{done}/cancel")
    assert conflict.status_code == 409 and conflict.content_type == PROBLEM
    assert conflict.json["type"] == "urn:conveyor:problem:invalid-transition"
    assert client.get(f"/v1/jobs/{done}").json["status"] == "succeeded"


def test_cancel_running_requests_cancellation(client: FlaskClient, app: APIFlask) -> None:
    job_id = submit(client).json["id"]
    with app.extensions["conveyor"].sessions() as session:
        claim_job(session, job_id=uuid.UUID(job_id), worker="w", lease_seconds=30)
        session.commit()
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200
    assert response.json["status"] == "running" and response.json["cancel_requested"] is True


def test_retry_failed_job_only(client: FlaskClient, app: APIFlask, publisher: RecordingPublisher) -> None:
    job_id = submit(client).json["id"]
    not_failed = client.post(f"/v1/jobs/{job_id}/retry")
    assert not_failed.status_code == 409 and not_failed.json["type"] == "urn:conveyor:problem:invalid-transition"
    run_to_end(app, job_id, fail=True)
    failed = client.get(f"/v1/jobs/{job_id}").json
    assert failed["status"] == "failed" and failed["error"]["message"] == "broken"
    retried = client.post(f"/v1/jobs/{job_id}/retry")
    assert retried.status_code == 202 and retried.json["status"] == "queued"
    assert retried.json["max_attempts"] == 3 and retried.json["attempt"] == 1
    assert [str(w.job_id) for w in publisher.sent] == [job_id, job_id]
    kinds = [e["kind"] for e in client.get(f"/v1/jobs/{job_id}/events").json["items"]]
    assert kinds == ["queued", "running", "failed", "queued"]


def test_job_types_lists_schemas(client: FlaskClient) -> None:
    response = client.get("/v1/job-types")
    types = {t["name"]: t for t in response.json["items"]}
    assert {"echo", "sleep", "fail"} <= set(types)
    assert types["echo"]["payload_schema"]["required"] == ["message"]
    assert types["echo"]["payload_schema"]["additionalProperties"] is False


def test_queues_counts(client: FlaskClient) -> None:
    submit(client)
    submit(client)
    queues = {q["name"]: q for q in client.get("/v1/queues").json["items"]}
    assert queues["default"]["counts"]["queued"] == 2
    assert queues["default"]["oldest_queued_age_seconds"] >= 0


def test_health_and_ready(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok", "checks": {}}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    # no maintenance worker in an API test: beat has never ticked, which /readyz reports without being unready
    assert ready.json["checks"] == {
        "database": "ok",
        "migrations": "ok",
        "broker": "ok",
        "clock": "ok",
        "beat": "not ticking: no maintenance tick has ever run",
    }


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "slug"),
    [
        ("POST", "/v1/jobs", {"data": "hello", "content_type": "text/plain"}, 415, "unsupported-media-type"),
        ("POST", "/v1/jobs", {"data": "type=echo", "content_type": "application/x-www-form-urlencoded"}, 415,
         "unsupported-media-type"),
        ("POST", "/v1/jobs", {"data": "{not json", "content_type": "application/json"}, 400, "malformed-request"),
        ("POST", "/v1/jobs", {"data": '{"type": "echo", "payload": {"message": NaN}}',
                              "content_type": "application/json"}, 400, "malformed-request"),
        ("POST", "/v1/jobs", {"data": "[" * 100_00 + "]" * 100_00, "content_type": "application/json"}, 400,
         "malformed-request"),
        ("POST", "/v1/jobs", {"data": b'{"type": "\xff"}', "content_type": "application/json"}, 400,
         "malformed-request"),
        ("POST", "/v1/jobs", {"json": ["echo"]}, 422, "validation-error"),
        ("POST", "/v1/jobs", {"json": {"type": "no_such_type", "payload": {}}}, 422, "unknown-job-type"),
        ("POST", "/v1/jobs", {"json": {"type": "echo", "payload": {"message": 1}}}, 422, "validation-error"),
        ("POST", "/v1/jobs", {"json": {"type": "echo", "payload": {"message": "x", "zzz": 1}}}, 422,
         "validation-error"),
        ("POST", "/v1/jobs", {"json": {"type": "echo", "payload": {"message": "x"}, "bogus": 1}}, 422,
         "validation-error"),
        ("POST", "/v1/jobs", {"json": {"type": "echo", "payload": {"message": "x"}, "priority": 10}}, 422,
         "validation-error"),
        ("POST", "/v1/jobs", {"json": {"type": "echo", "payload": {"message": "x"}, "queue": "nowhere"}}, 422,
         "unknown-queue"),
        ("POST", "/v1/jobs", {"json": {"type": "echo", "payload": {"message": "x"}, "run_at": "2030-01-01T00:00:00"}},
         422, "validation-error"),
        ("POST", "/v1/jobs", {"json": {"type": "echo", "payload": {"message": "x"}, "delay_seconds": 1,
                                       "run_at": "2030-01-01T00:00:00Z"}}, 422, "validation-error"),
        ("POST", "/v1/jobs", {"json": {"type": "echo", "payload": {"message": "x" * 70_000}}}, 413,
         "request-too-large"),
        ("POST", "/v1/jobs", {"json": {"type": "echo", "payload": {"message": "x"}},
                              "headers": {"Idempotency-Key": "x" * 300}}, 400, "bad-idempotency-key"),
        ("GET", "/v1/jobs/not-a-uuid", {}, 404, "not-found"),
        ("GET", f"/v1/jobs/{uuid.uuid4()}", {}, 404, "not-found"),
        ("GET", f"/v1/jobs/{uuid.uuid4()}/events", {}, 404, "not-found"),
        ("GET", f"/v1/jobs/{uuid.uuid4()}/result", {}, 404, "not-found"),
        ("POST", f"/v1/jobs/{uuid.uuid4()}/cancel", {}, 404, "not-found"),
        ("POST", "/v1/jobs/not-a-uuid/retry", {}, 404, "not-found"),
        ("GET", "/v1/jobs?cursor=bm90LWEtY3Vyc29y", {}, 400, "bad-cursor"),
        ("GET", "/v1/jobs?cursor=%%%", {}, 400, "bad-cursor"),
        ("GET", "/v1/jobs?limit=0", {}, 422, "validation-error"),
        ("GET", "/v1/jobs?limit=201", {}, 422, "validation-error"),
        ("GET", "/v1/jobs?limit=abc", {}, 422, "validation-error"),
        ("GET", "/v1/jobs?status=done", {}, 422, "validation-error"),
        ("GET", "/v1/jobs?created_after=yesterday", {}, 422, "validation-error"),
        ("GET", "/v1/jobs?unknown=1", {}, 422, "validation-error"),
        ("DELETE", "/v1/jobs", {}, 405, "method-not-allowed"),
        ("GET", "/v1/nothing-here", {}, 404, "not-found"),
    ],
)  # fmt: skip
def test_bad_input_gets_problem_json(
    client: FlaskClient,
    app: APIFlask,
    publisher: RecordingPublisher,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    slug: str,
) -> None:
    response = client.open(path, method=method, **kwargs)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == PROBLEM
    body = response.json
    assert body["type"] == f"urn:conveyor:problem:{slug}" and body["status"] == status
    assert body["title"] and isinstance(body["detail"], str)
    assert "Traceback" not in response.get_data(as_text=True)
    if status == 422 and slug == "validation-error":
        assert body["errors"] and all(e["field"] and e["message"] for e in body["errors"])
    assert publisher.sent == [] and count_jobs(app) == 0


def test_payload_error_points_at_the_field(client: FlaskClient) -> None:
    body = submit(client, {"type": "echo", "payload": {"message": 1}}).json
    assert body["errors"] == [{"field": "payload.message", "message": "Input should be a valid string"}]


def test_stream_sends_the_job_and_ends_when_finished(client: FlaskClient, app: APIFlask) -> None:
    job_id = submit(client).json["id"]
    run_to_end(app, job_id)
    response = client.get(f"/v1/jobs/{job_id}/stream", buffered=True)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    frames = [f for f in response.get_data(as_text=True).split("\n\n") if f]
    assert len(frames) == 1 and frames[0].startswith("event: job\ndata: ")
    assert json.loads(frames[0].split("data: ", 1)[1])["status"] == "succeeded"


def test_stream_of_unknown_job_is_404_problem(client: FlaskClient) -> None:
    response = client.get(f"/v1/jobs/{uuid.uuid4()}/stream")
    assert response.status_code == 404 and response.content_type == PROBLEM


@pytest.mark.parametrize("text", ["nul \u0000 byte", "lone surrogate \ud800", "emoji 🚀 and ünïcödé"])
def test_any_json_string_is_stored_or_refused_cleanly(client: FlaskClient, app: APIFlask, text: str) -> None:
    response = submit(client, {"type": "echo", "payload": {"message": text}})
    assert response.status_code in (202, 400), response.get_data(as_text=True)
    if response.status_code == 202:
        assert client.get(f"/v1/jobs/{response.json['id']}").json["payload"] == {"message": text}
    else:
        assert response.content_type == PROBLEM and count_jobs(app) == 0


def test_unique_key_answers_with_the_active_job(
    client: FlaskClient, app: APIFlask, publisher: RecordingPublisher
) -> None:
    body = {"type": "echo", "payload": {"message": "a"}, "unique_key": "daily-report"}
    first = submit(client, body)
    second = submit(client, {**body, "payload": {"message": "b"}})
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json["id"] == first.json["id"] and second.headers["Location"] == first.headers["Location"]
    assert count_jobs(app) == 1 and len(publisher.sent) == 1
    client.post(f"/v1/jobs/{first.json['id']}/cancel")
    third = submit(client, body)
    assert third.status_code == 202 and third.json["id"] != first.json["id"]


@pytest.mark.parametrize("query", ["type=%00", "queue=a%00b", "cursor=%00"])
def test_a_nul_character_in_a_list_filter_is_refused_not_a_server_error(client: FlaskClient, query: str) -> None:
    """PostgreSQL text cannot hold NUL; schemathesis found `GET /v1/jobs?type=%00` answering 500."""
    response = client.get(f"/v1/jobs?{query}")
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    assert "NUL" in response.json["errors"][0]["message"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/jobs?created_after=0001-01-01T00:00:00%2B01:00", None),
        ("GET", "/v1/jobs?created_before=9999-12-31T23:59:59-01:00", None),
        ("POST", "/v1/jobs", {"type": "echo", "payload": {"message": "x"}, "run_at": "9999-12-31T23:59:59-01:00"}),
    ],
)
def test_a_time_beyond_the_years_python_holds_in_utc_is_refused_not_a_server_error(
    client: FlaskClient, app: APIFlask, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """The schemathesis fuzz test found a 500 on a random seed: such a time overflowed in the UTC conversion."""
    response = client.open(path, method=method, json=body)
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert "out of range" in response.json["errors"][0]["message"]
    assert count_jobs(app) == 0


def test_a_failed_jobs_error_shows_no_server_path(app: APIFlask, client: FlaskClient, registry: Any) -> None:
    """Through the real executor: the error a client reads (the job's, and its events') names the handler's file
    inside its package, never this host's directories."""
    from tests.support.worker import job_runner

    job_id = submit(client, {"type": "fail", "payload": {"times": 5}, "max_attempts": 1}).json["id"]
    with job_runner(app.extensions["conveyor"].settings, registry) as run:
        assert run(job_id).status == "failed"
    body = client.get(f"/v1/jobs/{job_id}").get_data(as_text=True) + client.get(f"/v1/jobs/{job_id}/events").get_data(
        as_text=True
    )
    assert "tasks/fail.py" in body and 'File \\"/' not in body and os.getcwd() not in body
