"""Worker faults: SIGKILL of a child or the whole worker, poison pills, graceful shutdown, jobs longer than the
Redis visibility timeout. Each scenario asserts its ledger."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

import pytest
from kombu import Connection
from redis import Redis
from sqlalchemy import select

from core.models import Job
from tests.faults.conftest import Scenario

pytestmark = pytest.mark.e2e


def running_workers(s: Scenario, at_least: int = 1, timeout: float = 30) -> list[str]:
    """The `worker` column (host:pid of the child) of jobs now running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with s.cluster.session() as session:
            workers = list(session.scalars(select(Job.worker).where(Job.status == "running")))
        if len(workers) >= at_least:
            return [w for w in workers if w]
        time.sleep(0.05)
    raise AssertionError("no job started running")


@pytest.mark.parametrize("backend", ["embedded", "services"])
def test_sigkill_worker_child_mid_job(scenario: Callable[..., Scenario], backend: str) -> None:
    s = scenario("sigkill_child", backend)
    s.submit_many(30, payload={"seconds": 0.3})
    kill_a_running_child_then_count(s, submitted=30)


def kill_a_running_child_then_count(s: Scenario, submitted: int) -> None:
    """SIGKILL one worker child mid-job; every job then runs to the end once, the killed one a second time."""
    child = int(running_workers(s)[0].rsplit(":", 1)[1])
    os.kill(child, signal.SIGKILL)
    s.fault_over()
    s.drain(90)
    ledger = s.ledger()
    ledger.assert_no_loss_no_duplicates()
    assert ledger.completed == submitted
    assert ledger.duplicate_executions_expected >= 1  # the killed attempt ran again after its lease expired


@pytest.mark.parametrize("backend", ["embedded", "services"])
def test_sigkill_worker_child_mid_shared_message(scenario: Callable[..., Scenario], backend: str) -> None:
    """A batch's jobs share messages of 20: the killed child's message comes back, its finished jobs are skipped,
    the killed job is recovered by its lease, the rest run once."""
    s = scenario("sigkill_child_shared_message", backend, jobs_per_message="20")
    items = [{"type": "effect", "payload": {"seconds": 0.1}}] * 60
    body = s.cluster.request("POST", "/v1/jobs:batch", json={"jobs": items}).json()
    s.client.accepted += [item["job"]["id"] for item in body["items"]]
    time.sleep(0.5)  # a few jobs into each message
    kill_a_running_child_then_count(s, submitted=60)


@pytest.mark.chaos
def test_sigkill_whole_worker_with_jobs_in_flight(scenario: Callable[..., Scenario]) -> None:
    s = scenario("sigkill_worker", "services")
    s.submit_many(30, payload={"seconds": 0.5})
    running_workers(s, at_least=2)
    s.cluster.stop("worker", sig=signal.SIGKILL)  # parent and children, prefetched messages unacked
    time.sleep(1)
    s.cluster.start("worker")
    s.fault_over()
    s.drain(120)
    ledger = s.ledger()
    ledger.assert_no_loss_no_duplicates()
    assert ledger.completed == 30 and ledger.duplicate_executions_expected >= 2


def test_poison_job_fails_at_the_attempt_cap_and_spares_the_rest(scenario: Callable[..., Scenario]) -> None:
    s = scenario("poison_pill", "services")
    poison = s.submit_many(1, "crash", connections=1)[0]
    s.submit_many(20, payload={"seconds": 0.1})
    s.drain(120)
    ledger = s.ledger()
    ledger.assert_no_loss_no_duplicates()
    assert ledger.completed == 20 and ledger.failed_visible == 1
    row = s.cluster.row(poison)
    assert row.status == "failed" and row.attempt == 3 and row.error is not None
    assert row.error["type"] == "WorkerLost"


def test_sigterm_lets_in_flight_jobs_finish(scenario: Callable[..., Scenario]) -> None:
    s = scenario("graceful_sigterm", "services")
    s.submit_many(6, payload={"seconds": 2})
    running_workers(s, at_least=2)
    # Celery's warm shutdown: SIGTERM to the main process only, as Docker, systemd and Kubernetes send it.
    s.cluster.stop("worker", sig=signal.SIGTERM, timeout=30, group=False)
    s.cluster.start("worker")
    s.fault_over()
    s.drain(90)
    ledger = s.ledger()
    ledger.assert_no_loss_no_duplicates()
    assert ledger.completed == 6
    assert ledger.duplicate_executions_expected == 0  # nothing was interrupted, so nothing ran twice


def job_deliveries(redis: Redis) -> set[bytes]:
    """Delivery tags of unacked messages on the jobs' queue; the hash also holds the maintenance worker's messages."""
    return {tag for tag, raw in redis.hgetall("unacked").items() if json.loads(raw)[2] == "default"}


def test_job_longer_than_visibility_timeout_never_runs_twice_at_once(scenario: Callable[..., Scenario]) -> None:
    s = scenario("visibility_timeout", "services", visibility_timeout="2")
    s.submit_many(1, payload={"seconds": 8}, connections=1)  # one job: the other worker process is free to take a copy
    running_workers(s)
    redis = s.redis.client()
    # The delivery as the job starts: the worker's own sweep may put the message back during the sleep below, and
    # a snapshot taken after it would already hold the new delivery's tag.
    tags_before = job_deliveries(redis)
    time.sleep(3)  # the message is now unacked for longer than the visibility timeout
    # What kombu's periodic sweep does (every unacked_restore_interval x throttle seconds): put the message back.
    with Connection(s.cluster.env["CONVEYOR_BROKER_URL"], transport_options={"visibility_timeout": 2}) as conn:
        conn.default_channel.qos.restore_visible(num=100)
    # Restoring removes the delivery from the unacked hash; the job (8 s, acked late) still holds it otherwise. The
    # copy is then back in the queue or already taken and dropped by a worker, which a snapshot could miss.
    redelivered = False
    deadline = time.monotonic() + 3
    while not redelivered and time.monotonic() < deadline:
        redelivered = bool(tags_before - job_deliveries(redis))
        time.sleep(0.05)
    still_running = running_workers(s, timeout=0.5)
    unacked_before = len(tags_before)
    s.drain(60)
    ledger = s.ledger(visibility_timeout_seconds=2, job_seconds=8, messages_redelivered=unacked_before)
    ledger.assert_no_loss_no_duplicates()
    assert unacked_before == 1 and redelivered and still_running
    assert ledger.completed == 1 and ledger.executions == 1
    for job_id in s.client.accepted:
        assert s.cluster.event_kinds(job_id).count("running") == 1
