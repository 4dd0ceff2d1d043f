"""`conveyor doctor` against a running deployment (with Flower): every check passes and the exit code is 0; with
beat stopped it names beat, with the job worker stopped the queues nobody consumes, and exits 1. /readyz reports beat;
Flower shows the queues' waiting messages."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import backend_urls, running_cluster
from tests.e2e.harness import ROOT, Cluster, free_port

pytestmark = pytest.mark.e2e


def doctor(cluster: Cluster) -> tuple[int, dict[str, str]]:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "conveyor"), "doctor"],
        cwd=ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = {line.split()[1]: line for line in done.stdout.splitlines() if line.startswith(("ok ", "FAIL "))}
    return done.returncode, lines


def test_doctor_passes_on_a_running_deployment_and_names_what_stopped(tmp_path: Path) -> None:
    with running_cluster("embedded", tmp_path, flower_port=str(free_port())) as cluster:
        cluster.env["FLOWER_BASIC_AUTH"] = "ops:secret"
        cluster.start("flower")
        deadline = time.monotonic() + 30
        while (result := doctor(cluster))[0] != 0 and time.monotonic() < deadline:
            time.sleep(1)  # Flower takes a moment to listen
        code, lines = result
        assert code == 0, "\n".join(lines.values())
        assert set(lines) >= {
            "settings",
            "database",
            "migrations",
            "clock",
            "broker",
            "queues",
            "workers:default",
            "workers:webhooks",
            "maintenance",
            "beat",
            "flower",
        }
        assert all(line.startswith("ok ") for line in lines.values()), lines
        assert cluster.request("GET", "/readyz").json()["checks"]["beat"] == "ok"

        # Flower shows each consumed queue's waiting messages, all of Redis's priority levels summed: two sleeps
        # hold both pool processes, three echoes wait
        blockers = [cluster.submit("sleep", {"seconds": 3})["id"] for _ in range(2)]
        for job_id in blockers:
            cluster.wait_job(job_id, {"running"})
        for priority in (0, 5, 9):
            cluster.submit("echo", {"message": "waits"}, priority=priority)
        lengths = cluster.flower("/queues/length")["active_queues"]
        shown = {q["name"]: q["messages"] for q in lengths}
        # and the jobs' tasks only: the maintenance ticks (two a second here) send no task events
        tasks = cluster.flower("/tasks")
        names = {task.get("name") or "" for task in tasks.values()}
        assert "jobs.sleep" in names and not any(name.startswith("maintenance.") for name in names), names
        assert set(shown) == {"default", "webhooks", "maintenance"} and (shown["default"], shown["webhooks"]) == (3, 0)

        cluster.stop("beat")
        deadline = time.monotonic() + 30  # the beat window: 10 s without a tick
        while (result := doctor(cluster))[1].get("beat", "").startswith("ok") and time.monotonic() < deadline:
            time.sleep(1)
        code, lines = result
        assert code == 1 and lines["beat"].startswith("FAIL") and "ago" in lines["beat"], lines
        assert cluster.request("GET", "/readyz").json()["checks"]["beat"].startswith("not ticking")

        cluster.stop("worker")
        code, lines = doctor(cluster)
        assert code == 1 and lines["workers:default"].startswith("FAIL") and "no worker" in lines["workers:default"]
        assert lines["maintenance"].startswith("ok")  # the maintenance worker still runs


def test_flower_shows_the_queues_while_no_worker_runs(tmp_path: Path) -> None:
    """At 3 a.m. every worker may be down: Flower then lists the queues from the Celery configuration, and must
    still answer (it answered 500 while the configuration held the queues as a dict)."""
    with ExitStack() as stack:
        database_url, broker_url = backend_urls("embedded", tmp_path, stack)
        cluster = Cluster(tmp_path, database_url, broker_url, flower_port=str(free_port()))
        stack.callback(cluster.close)
        cluster.env["FLOWER_BASIC_AUTH"] = "ops:secret"
        cluster.start("flower")
        deadline = time.monotonic() + 30
        while True:
            try:
                lengths = cluster.flower("/queues/length")["active_queues"]
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, cluster.logs("flower")
                time.sleep(0.5)  # Flower takes a moment to listen
        assert {q["name"]: q["messages"] for q in lengths} == {"default": 0, "webhooks": 0, "maintenance": 0}
