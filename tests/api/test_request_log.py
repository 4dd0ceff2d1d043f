"""Request ids and the API's request lines: a client's X-Request-ID (or a new one) is echoed, on every line of the
request (parsed from the JSON log), kept on the jobs the request submits and in their message's header; a request
line never carries the query string; a 500 names the id to quote."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from core import logs
from core.models import Job
from core.queue import REQUEST_ID_HEADER, RecordingPublisher

NEW_ID = re.compile(r"[0-9a-f]{32}")
Records = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def json_log() -> Iterator[Records]:
    """The process's logging as production configures it, into a buffer; the records parsed from its lines."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    logs.configure("INFO", "json", stream=buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines()]
    root.handlers, root.level = handlers, level
    logs.clear()


def request_lines(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["logger"] == "conveyor.api"]


def test_a_client_request_id_is_echoed_logged_and_kept_on_its_job(
    app: APIFlask, client: FlaskClient, publisher: RecordingPublisher, json_log: Records
) -> None:
    response = client.post("/v1/jobs", json={"type": "echo", "payload": {"message": "m"}},
                           headers={"X-Request-ID": "checkout-4711"})  # fmt: skip
    assert response.status_code == 202
    assert response.headers["X-Request-ID"] == "checkout-4711"
    assert response.get_json()["request_id"] == "checkout-4711"
    with app.extensions["conveyor"].sessions() as session:
        assert session.get(Job, uuid.UUID(response.get_json()["id"])).request_id == "checkout-4711"
    assert publisher.messages[-1].headers == {REQUEST_ID_HEADER: "checkout-4711"}
    [line] = request_lines(json_log())
    assert line["request_id"] == "checkout-4711" and line["message"] == "POST /v1/jobs 202"
    assert (line["method"], line["path"], line["route"], line["status"]) == ("POST", "/v1/jobs", "/v1/jobs", 202)
    assert line["tenant"] == "default" and line["key_id"] and line["level"] == "info"
    # A GET of the job is another request, with an id of its own.
    polled = client.get(f"/v1/jobs/{response.get_json()['id']}")
    assert NEW_ID.fullmatch(polled.headers["X-Request-ID"])
    assert request_lines(json_log())[-1]["request_id"] == polled.headers["X-Request-ID"]


def test_every_job_of_a_batch_keeps_the_request_id(client: FlaskClient, publisher: RecordingPublisher) -> None:
    batch = [{"type": "echo", "payload": {"message": str(i)}} for i in range(3)]
    response = client.post("/v1/jobs:batch", json={"jobs": batch}, headers={"X-Request-ID": "nightly-import"})
    assert response.status_code == 200
    assert [item["job"]["request_id"] for item in response.get_json()["items"]] == ["nightly-import"] * 3
    assert {REQUEST_ID_HEADER: "nightly-import"} == publisher.messages[-1].headers


@pytest.mark.parametrize("given", [None, "", "two words", '{"level": "forged"}', "x" * 129, "ü"])
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_new_one(
    client: FlaskClient, json_log: Records, given: str | None
) -> None:
    headers = {} if given is None else {"X-Request-ID": given}
    response = client.get("/v1/jobs", headers=headers)
    assert response.status_code == 200
    made = response.headers["X-Request-ID"]
    assert NEW_ID.fullmatch(made)
    assert [line["request_id"] for line in request_lines(json_log())] == [made]


def test_a_request_line_never_carries_the_query_string(client: FlaskClient, json_log: Records) -> None:
    """A browser's EventSource sends its read token as ?access_token=: a log must never hold it."""
    job_id = uuid.uuid4()
    client.get(f"/v1/jobs/{job_id}?access_token=secret-token-value")
    [line] = request_lines(json_log())
    assert line["path"] == f"/v1/jobs/{job_id}"
    assert "secret-token-value" not in json.dumps(json_log())


def test_unauthenticated_and_unknown_routes_are_logged_with_their_id(anonymous: FlaskClient, json_log: Records) -> None:
    assert anonymous.get("/v1/jobs", headers={"X-Request-ID": "no-key"}).status_code == 401
    assert anonymous.get("/nowhere").status_code == 404
    lines = request_lines(json_log())
    assert [(r["request_id"] == "no-key", r["status"], r["route"]) for r in lines] == [
        (True, 401, "/v1/jobs"),
        (False, 404, None),
    ]
    assert "tenant" not in lines[0]  # no key, no tenant


def test_a_500_names_the_request_id_and_logs_the_error_with_it(app: APIFlask, make_key: Any, json_log: Records) -> None:
    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_url_rule("/v1/boom", "boom", boom)
    from tests.support.keys import client_with

    response = client_with(app, make_key()).get("/v1/boom", headers={"X-Request-ID": "report-me"})
    assert response.status_code == 500
    assert "report-me" in response.get_json()["detail"] and "a bug" not in response.get_json()["detail"]
    [error] = [r for r in json_log() if r["level"] == "error" and r["logger"] == "api.problems"]
    assert error["request_id"] == "report-me" and "RuntimeError: a bug" in error["exception"]
