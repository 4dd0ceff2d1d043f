"""Database faults on a private PostgreSQL server: stopped for 20 s while jobs run, and restarted while the API
serves requests."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from tests.faults.conftest import Scenario
from tests.faults.test_worker_faults import running_workers

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


def test_postgres_down_20s_during_execution(scenario: Callable[..., Scenario]) -> None:
    s = scenario("postgres_down_20s", "services")
    assert s.postgres is not None
    s.submit_many(30, payload={"seconds": 0.5})
    running_workers(s, at_least=2)
    s.postgres.stop()
    time.sleep(20)
    s.postgres.start()
    s.fault_over()
    s.drain(180)
    ledger = s.ledger(outage_seconds=20)
    ledger.assert_no_loss_no_duplicates()
    assert ledger.completed == 30


def test_postgres_restart_while_the_api_serves_is_503_never_500(scenario: Callable[..., Scenario]) -> None:
    s = scenario("postgres_restart_api", "services")
    assert s.postgres is not None
    codes: Counter[int] = Counter()
    retry_after_missing = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal retry_after_missing
        http = s.cluster.new_http()
        while not stop.is_set():
            response = http.post(f"{s.cluster.base}/v1/jobs", json={"type": "effect", "payload": {}}, timeout=30)
            codes[response.status_code] += 1
            if response.status_code == 202:
                s.client.accepted.append(response.json()["id"])
            elif response.status_code == 503 and "Retry-After" not in response.headers:
                retry_after_missing += 1
            codes[http.get(f"{s.cluster.base}/v1/jobs?limit=5", timeout=30).status_code] += 1
            time.sleep(0.02)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    s.postgres.stop()
    time.sleep(5)
    s.postgres.start()
    time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join(60)
    s.fault_over()
    s.drain(120)
    ledger = s.ledger(status_codes=dict(codes))
    ledger.assert_no_loss_no_duplicates()
    assert codes[500] == 0 and set(codes) <= {200, 202, 503}, codes
    assert codes[503] > 0 and retry_after_missing == 0, codes
    assert ledger.completed == ledger.submitted == len(s.client.accepted)
