"""OpenTelemetry (CONVEYOR_TRACING=true) in a running deployment: a client's `traceparent` continues in the API's
request span, and the worker's span of that job is its child (the message's header carried it); the log lines of
the request and of the job carry the trace id. Spans go to the console exporter, one JSON object per line."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import running_cluster

pytestmark = pytest.mark.e2e


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(errors="replace").splitlines() if line.startswith("{")]


def spans(path: Path, trace_id: str) -> list[dict[str, Any]]:
    return [r for r in records(path) if r.get("context", {}).get("trace_id") == f"0x{trace_id}"]


def test_a_callers_trace_continues_from_the_api_into_the_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    with running_cluster("embedded", tmp_path, tracing="true", log_format="json") as cluster:
        trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
        response = cluster.request("POST", "/v1/jobs", json={"type": "echo", "payload": {"message": "traced"}},
                                   headers={"traceparent": f"00-{trace_id}-{caller_span}-01"})  # fmt: skip
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        assert cluster.wait_job(job_id)["status"] == "succeeded"
        deadline = time.monotonic() + 20  # the batch span processors export every 5 s
        while time.monotonic() < deadline and not (
            spans(tmp_path / "api.log", trace_id) and spans(tmp_path / "worker.log", trace_id)
        ):
            time.sleep(0.5)
        [server] = spans(tmp_path / "api.log", trace_id)
        assert server["kind"] == "SpanKind.SERVER" and server["parent_id"] == f"0x{caller_span}"
        [run] = [s for s in spans(tmp_path / "worker.log", trace_id) if s["name"] == "run/jobs.echo"]
        assert run["parent_id"] == server["context"]["span_id"], (server, run)

        [request_line] = [r for r in records(tmp_path / "api.log")
                          if r.get("logger") == "conveyor.api" and r.get("path") == "/v1/jobs" and r.get("trace_id")
                          == trace_id]  # fmt: skip
        assert request_line["status"] == 202
        job_lines = [r for r in records(tmp_path / "worker.log") if r.get("job_id") == job_id]
        assert job_lines and {r["trace_id"] for r in job_lines} == {trace_id}
