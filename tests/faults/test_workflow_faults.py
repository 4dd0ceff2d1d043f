"""Workflow faults: a worker child SIGKILLed during a mapped fan-out and its fan-in, and the broker restarted without
persistence while a workflow's steps are released. The ledger counts every job of the workflow, and how many times
each step was released (once: a release is never lost, never doubled)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from core.models import Job
from core.workflows.models import WorkflowEvent
from tests.faults.conftest import Scenario
from tests.faults.test_worker_faults import running_workers

pytestmark = pytest.mark.e2e


def fan_out_and_in(s: Scenario, children: int, seconds: float) -> str:
    """effect → a map of `children` effects → an effect that receives their results (each effect writes one row)."""
    steps: list[dict[str, Any]] = [
        {"name": "start", "type": "effect", "payload": {"seconds": 0.1}},
        {"name": "fan", "type": "effect", "depends_on": ["start"], "map": [seconds] * children,
         "payload": {"seconds": {"$ref": "item"}}},
        {"name": "join", "type": "collect", "depends_on": ["fan"], "payload": {"items": {"$ref": "steps.fan.result"}}},
        {"name": "after", "type": "effect", "depends_on": ["join"]},
    ]  # fmt: skip
    response = s.cluster.request("POST", "/v1/workflows", json={"name": s.name, "steps": steps})
    assert response.status_code == 202, response.text
    workflow_id: str = response.json()["id"]
    return workflow_id


def count_workflow(s: Scenario, workflow_id: str, timeout: float = 120) -> dict[str, Any]:
    """Wait for the workflow to finish; the ledger then counts each of its jobs as accepted."""
    deadline = time.monotonic() + timeout
    flow: dict[str, Any] = {}
    while time.monotonic() < deadline:
        flow = s.cluster.request("GET", f"/v1/workflows/{workflow_id}").json()
        if flow["finished_at"] is not None:
            break
        time.sleep(0.25)
    flow_id = uuid.UUID(workflow_id)
    with s.cluster.session() as session:
        s.client.accepted += [str(i) for i in session.scalars(select(Job.id).where(Job.workflow_id == flow_id))]
        releases = dict(session.execute(
            select(WorkflowEvent.step, func.count()).where(WorkflowEvent.workflow_id == flow_id,
                                                           WorkflowEvent.kind == "step_released")
            .group_by(WorkflowEvent.step)).all())  # fmt: skip
    return {"status": flow.get("status"), "released_twice": sum(1 for n in releases.values() if n > 1),
            "steps_released": len(releases)}  # fmt: skip


@pytest.mark.parametrize("backend", ["embedded", "services"])
def test_sigkill_during_a_fan_out_and_its_fan_in(scenario: Callable[..., Scenario], backend: str) -> None:
    s = scenario("workflow_sigkill_fan_in", backend)
    workflow_id = fan_out_and_in(s, children=20, seconds=0.3)
    deadline = time.monotonic() + 60
    dead: set[int] = set()
    while len(dead) < 2 and time.monotonic() < deadline:  # one child early in the map, one near its end
        with s.cluster.session() as session:
            done = session.scalar(select(func.count()).where(Job.workflow_step == "fan", Job.status == "succeeded"))
        # a killed child's job stays `running` until its lease expires: only a live one is worth killing
        alive = [pid for pid in (int(w.rsplit(":", 1)[1]) for w in running_workers(s)) if pid not in dead]
        if alive and (done or 0) >= (2 if not dead else 16):
            os.kill(alive[0], signal.SIGKILL)
            dead.add(alive[0])
        time.sleep(0.05)
    killed = len(dead)
    s.fault_over()
    counted = count_workflow(s, workflow_id)
    ledger = s.ledger(**counted, children_killed=killed)
    ledger.assert_no_loss_no_duplicates()
    assert counted == {"status": "succeeded", "released_twice": 0, "steps_released": 4}
    assert ledger.completed == 23 and ledger.duplicate_executions_expected >= 1


@pytest.mark.chaos
def test_broker_restart_without_persistence_while_steps_are_released(scenario: Callable[..., Scenario]) -> None:
    """Released jobs whose messages the broker lost (or could not take) are published again by the reconciler."""
    s = scenario("workflow_broker_restart", "services")
    workflow_id = fan_out_and_in(s, children=30, seconds=0.2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with s.cluster.session() as session:
            if session.scalar(select(func.count()).where(Job.workflow_step == "fan")):
                break
        time.sleep(0.05)
    s.redis.stop()  # the map's messages are gone with it
    time.sleep(2)
    s.redis.start()
    s.fault_over()
    counted = count_workflow(s, workflow_id, timeout=180)
    ledger = s.ledger(**counted)
    ledger.assert_no_loss_no_duplicates()
    assert counted == {"status": "succeeded", "released_twice": 0, "steps_released": 4}
    assert ledger.completed == 33
