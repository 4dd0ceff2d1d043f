"""Flower tells the ledger's truth (issue 23): each attempt that will be retried is a RETRY task with its reason and
its `retries` count, the attempt that succeeds is SUCCESS, a job failed for good is FAILURE (Flower's failures equal
the ledger's), a job cancelled while it ran is REVOKED; no maintenance tick is in its task history."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from core.models import Job
from tests.e2e.conftest import running_cluster
from tests.e2e.harness import Cluster, free_port

pytestmark = pytest.mark.e2e


def test_flower_shows_retries_failures_and_cancellations_as_the_ledger_has_them(tmp_path: Path) -> None:
    with running_cluster("embedded", tmp_path, flower_port=str(free_port())) as cluster:
        cluster.env["FLOWER_BASIC_AUTH"] = "ops:secret"
        cluster.start("flower")
        _wait_for_flower_to_listen(cluster)
        retried = cluster.submit("fail", {"times": 2})["id"]  # fails attempts 1 and 2, succeeds on 3
        failed = [cluster.submit("fail", {"times": 5}, max_attempts=2)["id"] for _ in range(2)]
        succeeded = cluster.submit("echo", {"message": "hi"})["id"]
        cancelled = cluster.submit("sleep", {"seconds": 60})["id"]
        cluster.wait_job(cancelled, {"running"})
        assert cluster.request("POST", f"/v1/jobs/{cancelled}/cancel").status_code in (200, 202)
        for job_id in (retried, *failed, succeeded, cancelled):
            cluster.wait_job(job_id)
        assert cluster.job(retried)["status"] == "succeeded" and cluster.job(cancelled)["status"] == "cancelled"
        with cluster.engine.connect() as connection:
            ledger_failed = connection.execute(select(func.count()).where(Job.status == "failed")).scalar_one()
        assert ledger_failed == 2

        expected_attempts = [("RETRY", 0), ("RETRY", 1), ("SUCCESS", 2)]
        deadline = time.monotonic() + 30  # Flower learns of the tasks from the workers' events
        while True:
            tasks = list(cluster.flower("/tasks").values())
            attempts = sorted((t["state"], t["retries"]) for t in tasks if t["args"] == f"['{retried}']")
            states = {job_id: sorted(t["state"] for t in tasks if t["args"] == f"['{job_id}']")
                      for job_id in (*failed, succeeded, cancelled)}  # fmt: skip
            done = (
                attempts == expected_attempts and states[cancelled] == ["REVOKED"] and states[succeeded] == ["SUCCESS"]
            )
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert attempts == expected_attempts, tasks
        retry = next(t for t in tasks if t["args"] == f"['{retried}']" and t["state"] == "RETRY")
        assert "DeliberateFailure" in retry["exception"] and "failing on purpose" in retry["exception"]
        assert states[succeeded] == ["SUCCESS"] and states[cancelled] == ["REVOKED"], states
        for job_id in failed:  # max_attempts 2: one RETRY, then FAILURE
            assert states[job_id] == ["FAILURE", "RETRY"], states
        assert sum(t["state"] == "FAILURE" for t in tasks) == ledger_failed
        # no maintenance tick (a task Flower saw no task-received event of has no name)
        assert {t["name"] for t in tasks} - {None} == {"jobs.fail", "jobs.echo", "jobs.sleep"}


def _wait_for_flower_to_listen(cluster: Cluster) -> None:
    """Flower only knows of the tasks whose events came after it connected: until it shows one, submit another."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job_id = cluster.submit("echo", {"message": "is Flower listening?"})["id"]
        cluster.wait_job(job_id)
        time.sleep(1)
        try:
            if any(t["args"] == f"['{job_id}']" for t in cluster.flower("/tasks").values()):
                return
        except requests.ConnectionError:
            pass  # not listening yet
    pytest.fail("Flower never showed a job")
