"""Schedules with real processes: two beats at once, a beat killed and restarted, edits while beat runs,
pause/resume/trigger over HTTP. The database's job rows are the measure: one job per slot, no slot lost."""

from __future__ import annotations

import signal
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core.models import Job, Schedule
from tests.e2e.harness import Cluster

INTERVAL = 2


def create(cluster: Cluster, name: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "type": "echo", "payload": {"message": "{{ slot_utc }}"}, "interval_seconds": INTERVAL}
    response = cluster.request("POST", "/v1/schedules", json=body | fields)
    assert response.status_code == 201, response.text
    schedule: dict[str, Any] = response.json()
    return schedule


def runs(cluster: Cluster, schedule_id: str) -> list[Job]:
    with cluster.session() as session:
        query = select(Job).where(Job.schedule_id == uuid.UUID(schedule_id)).order_by(Job.schedule_slot)
        return list(session.scalars(query))


def row(cluster: Cluster, schedule_id: str) -> Schedule:
    with cluster.session() as session:
        schedule = session.get(Schedule, uuid.UUID(schedule_id))
        assert schedule is not None
        return schedule


def wait_runs(cluster: Cluster, schedule_id: str, count: int, timeout: float = 30) -> list[Job]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = runs(cluster, schedule_id)
        if len(jobs) >= count:
            return jobs
        time.sleep(0.2)
    raise AssertionError(f"{schedule_id}: {len(runs(cluster, schedule_id))} runs, wanted {count}\n"
                         + cluster.logs("maintenance") + cluster.logs("beat"))  # fmt: skip


def pause(cluster: Cluster, schedule_id: str) -> None:
    assert cluster.request("POST", f"/v1/schedules/{schedule_id}/pause").status_code == 200


def slot_grid(jobs: list[Job]) -> list[datetime]:
    """Every slot from the first job's to the last job's: what `no slot missed` means."""
    slots = [job.schedule_slot for job in jobs if job.schedule_slot is not None]
    step = timedelta(seconds=INTERVAL)
    return [slots[0] + i * step for i in range(int((slots[-1] - slots[0]) / step) + 1)]


def test_two_beats_make_exactly_one_job_per_slot_and_miss_none(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_another("beat-2", "beat", data_dir=str(tmp_path))  # its own beat state file
    cluster.start_another("maintenance-2", "maintenance")
    try:
        schedule = create(cluster, "two-beats")
        wait_runs(cluster, schedule["id"], 8, timeout=40)
    finally:
        cluster.stop("beat-2", "maintenance-2")
    pause(cluster, schedule["id"])
    jobs = runs(cluster, schedule["id"])
    slots = [job.schedule_slot for job in jobs]
    assert len(slots) == len(set(slots)), "one job per slot"
    assert slots == slot_grid(jobs), "no slot missed"
    assert row(cluster, schedule["id"]).missed_slots == 0
    for job in jobs:  # and each of them ran once, to success
        assert cluster.wait_job(str(job.id))["status"] == "succeeded"
        assert cluster.event_kinds(str(job.id)).count("running") == 1


def test_beat_killed_and_restarted_follows_the_misfire_policy(cluster: Cluster) -> None:
    skip = create(cluster, "after-outage-skip", misfire="skip")
    catch_up = create(cluster, "after-outage-all", misfire="all")
    wait_runs(cluster, skip["id"], 2)
    before = {s["id"]: len(runs(cluster, s["id"])) for s in (skip, catch_up)}
    cluster.stop("beat", sig=signal.SIGKILL)
    time.sleep(4 * INTERVAL + 1)  # at least four slots come due with no beat
    cluster.start("beat")
    for schedule in (skip, catch_up):
        wait_runs(cluster, schedule["id"], before[schedule["id"]] + 2)
        pause(cluster, schedule["id"])

    caught_up = runs(cluster, catch_up["id"])
    assert [j.schedule_slot for j in caught_up] == slot_grid(caught_up), "`all` fires every missed slot"
    assert row(cluster, catch_up["id"]).missed_slots == 0

    skipped = runs(cluster, skip["id"])
    fired = [j.schedule_slot for j in skipped]
    missing = sorted(set(slot_grid(skipped)) - set(fired))
    assert len(missing) >= 3, "`skip` fires only the latest of the missed slots"
    assert row(cluster, skip["id"]).missed_slots == len(missing)
    assert len(fired) == len(set(fired))


def test_an_edit_while_beat_runs_applies_from_the_next_slot(cluster: Cluster) -> None:
    schedule = create(cluster, "edited", payload={"message": "v1"})
    wait_runs(cluster, schedule["id"], 1)
    edited = cluster.request("PATCH", f"/v1/schedules/{schedule['id']}", json={"payload": {"message": "v2"}})
    assert edited.status_code == 200
    edited_at = datetime.fromisoformat(edited.json()["updated_at"])
    jobs = wait_runs(cluster, schedule["id"], len(runs(cluster, schedule["id"])) + 2)
    pause(cluster, schedule["id"])
    after = [j.payload["message"] for j in jobs if j.created_at > edited_at]
    before = [j.payload["message"] for j in jobs if j.created_at <= edited_at]
    assert set(before) == {"v1"} and after and set(after) == {"v2"}


def test_pause_resume_and_trigger_over_http(cluster: Cluster) -> None:
    schedule = create(cluster, "controls", interval_seconds=3600)  # no slot during the test
    job = cluster.request("POST", f"/v1/schedules/{schedule['id']}/trigger").json()
    assert cluster.wait_job(job["id"])["status"] == "succeeded"
    assert cluster.request("GET", f"/v1/jobs/{job['id']}/result").json()["data"]["message"] == job["payload"]["message"]

    fast = create(cluster, "paused-one")
    pause(cluster, fast["id"])
    paused_count = len(runs(cluster, fast["id"]))
    time.sleep(2 * INTERVAL + 1)
    assert len(runs(cluster, fast["id"])) == paused_count, "a paused schedule fires nothing"
    assert cluster.request("POST", f"/v1/schedules/{fast['id']}/resume").status_code == 200
    wait_runs(cluster, fast["id"], paused_count + 1)
    pause(cluster, fast["id"])
    listed = cluster.request("GET", f"/v1/schedules/{schedule['id']}/runs").json()["items"]
    assert [j["id"] for j in listed] == [job["id"]]
