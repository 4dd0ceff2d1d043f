"""Structured logs of a running deployment: the X-Request-ID a client sends to POST /v1/jobs is on the API's line
for that request and on every line the worker logs for that job, on each attempt (a retry's message is published
by the worker's failure path, not the request), with the job's context. The logs are parsed as JSON, not grepped."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import running_cluster

pytestmark = pytest.mark.e2e


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The log's JSON records (Celery's banner and warnings printed to stderr are not records)."""
    records = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


@pytest.mark.parametrize("kind", ["embedded", "services"])
def test_a_request_id_follows_its_job_from_the_api_into_every_worker_line(kind: str, tmp_path: Path) -> None:
    with running_cluster(kind, tmp_path, log_format="json") as cluster:
        request_id = f"e2e-{uuid.uuid4().hex[:12]}"
        response = cluster.request("POST", "/v1/jobs", json={"type": "fail", "payload": {"times": 1}},
                                   headers={"X-Request-ID": request_id})  # fmt: skip
        assert response.status_code == 202, response.text
        assert response.headers["X-Request-ID"] == request_id
        job_id = response.json()["id"]
        done = cluster.wait_job(job_id)
        assert done["status"] == "succeeded" and done["attempt"] == 2 and done["request_id"] == request_id

        api = [r for r in json_lines(tmp_path / "api.log") if r.get("request_id") == request_id]
        [line] = [r for r in api if r.get("logger") == "conveyor.api"]
        assert (line["method"], line["path"], line["route"], line["status"]) == ("POST", "/v1/jobs", "/v1/jobs", 202)
        assert line["tenant"] == "default" and line["level"] == "info" and line["duration_ms"] >= 0

        lines = [r for r in json_lines(tmp_path / "worker.log") if r.get("job_id") == job_id]
        assert lines, cluster.logs("worker")
        assert {r["request_id"] for r in lines} == {request_id}
        # The failed attempt is Celery's RETRY (its INFO line is quieted): the executor's warning has the traceback.
        assert [r for r in lines if r["logger"] == "celery.app.trace"] == []
        [raised] = [r for r in lines if r["logger"] == "worker.executor" and r["level"] == "warning"]
        assert "DeliberateFailure" in raised["exception"] and "now retrying" in raised["message"]
        worker = [r for r in lines if not r["logger"].startswith("celery.")]
        assert {r["type"] for r in worker} == {"fail"} and {r["queue"] for r in worker} == {"default"}
        assert all(r["worker"].startswith("jobs@") for r in worker)
        said = [(r["attempt"], r["logger"], r["message"]) for r in worker]
        assert said == [
            (1, "worker.executor", f"job {job_id} started, attempt 1 of 3"),
            (
                1,
                "worker.executor",
                f"job {job_id} attempt 1 raised DeliberateFailure: failing on purpose: attempt 1 of "
                "the first 1; now retrying",
            ),
            (2, "worker.executor", f"job {job_id} started, attempt 2 of 3"),
            (2, "conveyor.job.fail", "succeeding after 1 failed attempts"),
            (2, "worker.executor", f"job {job_id} succeeded"),
        ], worker
        assert worker[-1]["duration_ms"] >= 0 and worker[1]["error_type"] == "DeliberateFailure"
        # Another job's lines do not carry this request's id.
        other = cluster.submit("echo", {"message": "unrelated"})
        cluster.wait_job(other["id"])
        others = [r for r in json_lines(tmp_path / "worker.log") if r.get("job_id") == other["id"]]
        assert others and all(r["request_id"] != request_id for r in others)
