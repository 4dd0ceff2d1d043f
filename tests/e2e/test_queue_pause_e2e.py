"""A paused queue in a running deployment: its job stays `queued` while another queue's jobs run, also across a
restart of every process (the pause is a database row), and runs once after resume."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import running_cluster
from tests.e2e.harness import Cluster

pytestmark = pytest.mark.e2e


def stays_queued(cluster: Cluster, job_id: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert cluster.job(job_id)["status"] == "queued", cluster.logs("worker")
        time.sleep(0.25)


@pytest.mark.parametrize("kind", ["embedded", "services"])
def test_a_paused_queue_holds_its_job_across_a_restart_and_runs_it_once_resumed(kind: str, tmp_path: Path) -> None:
    with running_cluster(kind, tmp_path, queues="default,batch,webhooks") as cluster:
        paused = cluster.request("POST", "/v1/queues/batch/pause", json={"reason": "e2e"})
        assert paused.status_code == 200 and paused.json()["paused"]["reason"] == "e2e"
        held = cluster.submit("echo", {"message": "held"}, queue="batch")["id"]
        others = [cluster.submit("echo", {"message": str(i)})["id"] for i in range(3)]
        for job_id in others:
            assert cluster.wait_job(job_id)["status"] == "succeeded"
        stays_queued(cluster, held, 5)

        cluster.stop()  # every Conveyor process (the broker stays up)
        cluster.start()
        cluster.wait_ready()
        cluster.wait_workers()
        [batch] = [q for q in cluster.request("GET", "/v1/queues").json()["items"] if q["name"] == "batch"]
        assert batch["paused"]["reason"] == "e2e" and batch["depth"] == 1
        stays_queued(cluster, held, 3)

        assert cluster.request("POST", "/v1/queues/batch/resume").json()["paused"] is None
        done = cluster.wait_job(held, timeout=30)
        assert done["status"] == "succeeded" and done["attempt"] == 1
        assert cluster.event_kinds(held).count("running") == 1
