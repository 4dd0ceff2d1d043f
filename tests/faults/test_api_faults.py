"""API faults: a burst of concurrent submits with one Idempotency-Key, and pathological bodies that must be
refused with a 4xx without publishing anything."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import func, select

from core.models import Job
from tests.faults.conftest import Scenario

pytestmark = pytest.mark.e2e


def test_50_concurrent_posts_with_one_idempotency_key_make_one_job(scenario: Callable[..., Scenario]) -> None:
    s = scenario("idempotency_burst_50", "services")
    body = {"type": "effect", "payload": {"seconds": 0.1}}

    def post(_: int) -> requests.Response:
        headers = {"Idempotency-Key": "burst", **s.cluster.auth}
        return requests.post(f"{s.cluster.base}/v1/jobs", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(post, range(50)))
    assert sorted({r.status_code for r in responses}) in ([200, 202], [202])
    assert [r.status_code for r in responses].count(202) == 1
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    s.client.accepted = list(ids)
    s.drain(30)
    ledger = s.ledger(requests=50)
    ledger.assert_no_loss_no_duplicates()
    assert ledger.submitted == 1 and ledger.completed == 1 and ledger.executions == 1


def test_pathological_bodies_are_refused_and_nothing_is_published(scenario: Callable[..., Scenario]) -> None:
    s = scenario("pathological_payloads", "services", start=("api",))  # no worker: whatever is published stays
    url = f"{s.cluster.base}/v1/jobs"
    json_headers = {"Content-Type": "application/json", **s.cluster.auth}
    nested = '{"type": "effect", "payload": {"a": ' + "[" * 10_000 + "]" * 10_000 + "}}"
    cases = {
        "10 MB body": (b'{"type": "effect", "payload": {"x": "' + b"x" * (10 << 20) + b'"}}', 413),
        "10,000-deep nesting": (nested.encode(), 400),
        "invalid UTF-8": (b'{"type": "effect", "payload": {"x": "\xff\xfe"}}', 400),
        "NaN": (b'{"type": "effect", "payload": {"seconds": NaN}}', 400),
        "Infinity": (b'{"type": "effect", "payload": {"seconds": Infinity}}', 400),
        "NUL character": (json.dumps({"type": "effect", "payload": {"x": "\u0000"}}).encode(), 400),
    }
    for name, (raw, status) in cases.items():
        try:
            response = requests.post(url, data=raw, headers=json_headers, timeout=30)
        except requests.ConnectionError:
            # gunicorn may close the socket on a body far over the limit before reading it all: also a refusal
            assert name == "10 MB body"
            continue
        assert response.status_code == status, (name, response.status_code, response.text[:200])
        assert response.headers["Content-Type"] == "application/problem+json", name
    with s.cluster.session() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
    broker = s.redis.client()
    assert [k for k in broker.keys("default*")] == [], "nothing was published"
    assert requests.get(f"{s.cluster.base}/healthz", timeout=5).status_code == 200  # and the API is still up
