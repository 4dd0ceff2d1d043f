"""Broker faults: a crash between commit and publish, Redis restarts with and without persistence, a network
blackhole in front of Redis, and cancelled jobs whose messages survive a restart of everything."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests

from core.db import make_sessionmaker
from core.registry import load_registry
from core.submit import submit_job
from tests.faults.conftest import Scenario

pytestmark = pytest.mark.e2e


def test_crash_between_commit_and_publish_is_completed_by_the_reconciler(scenario: Callable[..., Scenario]) -> None:
    s = scenario("commit_without_publish", "services")
    registry = load_registry()
    with make_sessionmaker(s.cluster.engine)() as session:  # what an API process does before it dies
        for _ in range(20):
            job, _ = submit_job(session, registry=registry, known_queues=["default"], type="effect", payload={})
            s.client.accepted.append(str(job.id))
        session.commit()
    s.fault_over()
    s.drain(60)
    ledger = s.ledger(republish_after_seconds=10)
    ledger.assert_no_loss_no_duplicates()
    assert ledger.completed == 20
    assert all("republished" in s.cluster.event_kinds(job_id) for job_id in s.client.accepted)


@pytest.mark.parametrize("aof", [False, pytest.param(True, marks=pytest.mark.chaos)], ids=["no-persistence", "aof"])
def test_redis_restart_loses_no_job(scenario: Callable[..., Scenario], aof: bool) -> None:
    s = scenario(f"redis_restart_{'aof' if aof else 'no_persistence'}", "services", aof=aof)
    s.submit_many(60, payload={"seconds": 0.2})  # a backlog of ~6 s for two worker processes
    time.sleep(1)
    s.redis.stop()
    time.sleep(1)
    s.redis.start()
    s.fault_over()
    s.drain(120)
    ledger = s.ledger(aof=aof)
    ledger.assert_no_loss_no_duplicates()
    assert ledger.completed == 60


@pytest.mark.chaos
def test_broker_blackhole_hangs_no_request_and_loses_no_job(scenario: Callable[..., Scenario]) -> None:
    s = scenario("broker_blackhole_10s", "services", proxy=True)
    assert s.proxy is not None
    s.submit_many(10, payload={"seconds": 0.1})
    s.proxy.set_mode("blackhole")
    started = time.monotonic()
    slowest = 0.0
    while time.monotonic() - started < 10:
        t0 = time.monotonic()
        s.submit_many(1, payload={"seconds": 0.1}, connections=1)
        slowest = max(slowest, time.monotonic() - t0)
    s.proxy.set_mode("pass")  # the partition heals: held bytes flow again
    s.fault_over()
    s.drain(120)
    ledger = s.ledger(slowest_submit_seconds=round(slowest, 2))
    ledger.assert_no_loss_no_duplicates()
    assert ledger.refused_requests == 0 and ledger.completed == ledger.submitted
    assert slowest < 10, "a submit must not hang on a dead broker"


def test_cancelled_jobs_never_run_after_a_restart_of_workers_and_broker(scenario: Callable[..., Scenario]) -> None:
    s = scenario("cancel_100_then_restart", "services", aof=True, start=("api", "maintenance", "beat"))
    ids = s.submit_many(100, payload={})
    for job_id in ids:
        assert requests.post(f"{s.cluster.base}/v1/jobs/{job_id}/cancel", timeout=10).json()["status"] == "cancelled"
    assert s.redis.client().llen("default") + s.redis.client().llen("default\x06\x169") >= 1  # messages wait
    s.redis.stop()
    s.redis.start()
    s.cluster.stop("api", "maintenance", "beat")
    s.cluster.start()
    s.cluster.wait_ready()
    s.cluster.wait_workers()
    time.sleep(3)  # every surviving message is delivered and refused by the claim
    s.fault_over()
    ledger = s.ledger()
    ledger.assert_no_loss_no_duplicates()
    assert ledger.cancelled == 100 and ledger.executions == 0
    remaining = s.redis.client().llen("default") + s.redis.client().llen("default\x06\x169")
    assert remaining == 0, "the cancelled jobs' messages were consumed (and dropped), not left behind"
