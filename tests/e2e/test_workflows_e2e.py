"""Workflows through real api/worker/beat processes over HTTP, on each backend: a chain, a diamond with a 1,000-way
fan-out, a worker killed mid-step and during a fan-in, child jobs of a killed attempt, and the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from core.models import Job, JobEvent, JobResult
from core.workflows.models import WorkflowEvent
from tests.e2e.harness import ROOT, Cluster

pytestmark = pytest.mark.e2e


def submit(cluster: Cluster, steps: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    response = cluster.request("POST", "/v1/workflows", json={"name": "e2e", "steps": steps, **fields})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_workflow(cluster: Cluster, workflow_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    flow: dict[str, Any] = {}
    while time.monotonic() < deadline:
        flow = cluster.request("GET", f"/v1/workflows/{workflow_id}").json()
        if flow["finished_at"] is not None:
            return flow
        time.sleep(0.2)
    raise AssertionError(f"workflow still {flow.get('status')}: {flow}\n" + cluster.logs("worker"))


def step(flow: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in flow["steps"] if s["name"] == name)
    return found


def ref(path: str) -> dict[str, str]:
    return {"$ref": path}


def ledger(cluster: Cluster, workflow_id: str) -> tuple[int, int, int, dict[str, int]]:
    """(jobs, results, succeeded events, releases by step) of the workflow, from the database."""
    flow = uuid.UUID(workflow_id)
    with cluster.session() as session:
        jobs = session.scalar(select(func.count()).select_from(Job).where(Job.workflow_id == flow)) or 0
        results = session.scalar(select(func.count()).select_from(JobResult).join(Job, Job.id == JobResult.job_id)
                                 .where(Job.workflow_id == flow)) or 0  # fmt: skip
        succeeded = session.scalar(select(func.count()).select_from(JobEvent).join(Job, Job.id == JobEvent.job_id)
                                   .where(Job.workflow_id == flow, JobEvent.kind == "succeeded")) or 0  # fmt: skip
        releases = dict(session.execute(
            select(WorkflowEvent.step, func.count()).where(WorkflowEvent.workflow_id == flow,
                                                           WorkflowEvent.kind == "step_released")
            .group_by(WorkflowEvent.step)).all())  # fmt: skip
    return jobs, results, succeeded, {str(k): v for k, v in releases.items()}


def test_a_chain_of_three_passes_each_result_on(cluster: Cluster) -> None:
    made = submit(cluster, [
        {"name": "first", "type": "echo", "payload": {"message": "one"}},
        {"name": "second", "type": "collect", "depends_on": ["first"],
         "payload": {"value": ref("steps.first.result.message")}},
        {"name": "third", "type": "collect", "depends_on": ["second"],
         "payload": {"items": [ref("steps.second.result.value"), "three"]}},
    ])  # fmt: skip
    flow = wait_workflow(cluster, made["id"])
    assert flow["status"] == "succeeded" and [s["status"] for s in flow["steps"]] == ["succeeded"] * 3
    result = cluster.request("GET", f"/v1/jobs/{step(flow, 'third')['job_id']}/result").json()["data"]
    assert result["items"] == ["one", "three"]
    jobs, results, succeeded, releases = ledger(cluster, made["id"])
    assert (jobs, results, succeeded, releases) == (3, 3, 3, {"first": 1, "second": 1, "third": 1})


def test_a_diamond_with_a_1000_way_fan_out_runs_each_job_once(cluster: Cluster) -> None:
    made = submit(cluster, [
        {"name": "source", "type": "collect", "payload": {"items": list(range(1000))}},
        {"name": "double", "type": "collect", "depends_on": ["source"], "map": ref("steps.source.result.items"),
         "payload": {"value": ref("item")}},
        {"name": "side", "type": "echo", "depends_on": ["source"], "payload": {"message": "side"}},
        {"name": "join", "type": "collect", "depends_on": ["double", "side"],
         "payload": {"items": ref("steps.double.result"), "value": ref("steps.side.result.message")}},
    ])  # fmt: skip
    flow = wait_workflow(cluster, made["id"])
    assert flow["status"] == "succeeded", flow
    result = cluster.request("GET", f"/v1/jobs/{step(flow, 'join')['job_id']}/result").json()["data"]
    assert [item["value"] for item in result["items"]] == list(range(1000)) and result["value"] == "side"
    jobs, results, succeeded, releases = ledger(cluster, made["id"])
    assert (jobs, results, succeeded) == (1003, 1003, 1003)
    assert releases == {"source": 1, "double": 1, "side": 1, "join": 1}


def worker_child_running(cluster: Cluster, job_id: str, timeout: float = 30) -> int:
    cluster.wait_job(job_id, {"running"}, timeout=timeout)
    worker = cluster.row(job_id).worker
    assert worker is not None
    return int(worker.rsplit(":", 1)[1])


def test_a_worker_killed_mid_step_and_during_the_fan_in_changes_nothing(cluster: Cluster) -> None:
    made = submit(cluster, [
        {"name": "slow", "type": "sleep", "payload": {"seconds": 2}},
        {"name": "fan", "type": "sleep", "depends_on": ["slow"], "map": [0.3] * 12,
         "payload": {"seconds": ref("item")}},
        {"name": "join", "type": "collect", "depends_on": ["fan"], "payload": {"items": ref("steps.fan.result")}},
    ])  # fmt: skip
    os.kill(worker_child_running(cluster, step(made, "slow")["job_id"]), signal.SIGKILL)  # mid-step
    deadline = time.monotonic() + 60
    killed = 0
    fan = (Job.workflow_id == uuid.UUID(made["id"])) & (Job.workflow_step == "fan")
    dead: set[int] = set()
    while killed < 2 and time.monotonic() < deadline:  # kill the children running the map's last items
        with cluster.session() as session:
            workers = session.scalars(select(Job.worker).where(fan, Job.status == "running")).all()
            done = session.scalar(select(func.count()).where(fan, Job.status == "succeeded")) or 0
        # a killed child's job stays `running` until its lease expires: only a live one is worth killing
        alive = [pid for pid in (int(w.rsplit(":", 1)[1]) for w in workers if w) if pid not in dead]
        if alive and done >= 8 + 2 * killed:
            os.kill(alive[0], signal.SIGKILL)
            dead.add(alive[0])
            killed += 1
        time.sleep(0.05)
    flow = wait_workflow(cluster, made["id"])
    assert flow["status"] == "succeeded", flow
    assert step(flow, "slow")["attempts"] == 2  # the killed attempt, then the one that succeeded
    jobs, results, succeeded, releases = ledger(cluster, made["id"])
    assert (jobs, results, succeeded) == (14, 14, 14)  # every job succeeded once, none twice
    assert releases == {"slow": 1, "fan": 1, "join": 1}
    result = cluster.request("GET", f"/v1/jobs/{step(flow, 'join')['job_id']}/result").json()["data"]
    assert result["count"] == 12


def test_a_killed_attempts_children_are_never_made(cluster: Cluster) -> None:
    parent = cluster.submit("spawn", {"children": 3, "seconds": 2})["id"]
    os.kill(worker_child_running(cluster, parent), signal.SIGKILL)  # after ctx.enqueue, before the success
    job = cluster.wait_job(parent, timeout=60)
    assert job["status"] == "succeeded" and job["attempt"] == 2
    with cluster.session() as session:
        children = session.scalars(select(Job).where(Job.parent_id == uuid.UUID(parent))).all()
    assert len(children) == 3  # the second attempt's only
    for child in children:
        assert cluster.wait_job(str(child.id))["status"] == "succeeded"


def test_the_cli_submits_a_workflow_file_and_follows_it(cluster: Cluster, tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump({"name": "from-cli", "steps": [
        {"name": "hello", "type": "echo", "payload": {"message": "hi"}},
        {"name": "again", "type": "echo", "depends_on": ["hello"],
         "payload": {"message": ref("steps.hello.result.message")}},
    ]}))  # fmt: skip
    env = {**cluster.env, "CONVEYOR_API_URL": cluster.base, "CONVEYOR_API_KEY": cluster.key}
    cli = [str(Path(sys.executable).with_name("conveyor")), "workflow"]
    done = subprocess.run([*cli, "submit", str(path), "--wait"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    workflow_id, name, status = done.stdout.split()[:3]
    assert (name, status) == ("from-cli", "succeeded")
    assert "again" in done.stderr and "succeeded" in done.stderr  # the steps' lines, as they changed
    shown = subprocess.run([*cli, "show", workflow_id], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=60, check=True)  # fmt: skip
    assert [line.split()[:2] for line in shown.stdout.splitlines()[1:]] == [["hello", "succeeded"],
                                                                           ["again", "succeeded"]]  # fmt: skip
    bad = path.with_name("bad.yaml")
    bad.write_text(yaml.safe_dump({"name": "bad", "steps": [{"name": "a", "type": "echo", "depends_on": ["a"]}]}))
    refused = subprocess.run([*cli, "submit", str(bad)], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60, check=False)  # fmt: skip
    assert refused.returncode == 1 and "depends on itself" in refused.stderr
