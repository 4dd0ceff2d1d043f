"""Ctrl-C in `conveyor up` during a job: the workers shut down warm, so a 5 s job ends `succeeded`, run once; a job
longer than CONVEYOR_SHUTDOWN_GRACE_SECONDS is stopped, released at once (no wait for its lease), and runs again at
the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from core.db import make_engine, make_sessionmaker
from core.models import Job, JobEvent
from tests.e2e.harness import ROOT, free_port
from tests.e2e.test_conveyor_up import CONVEYOR, wait_for_api

pytestmark = pytest.mark.e2e


class Up:
    """One `conveyor up` on a DATA_DIR of the test's, started in its own session (as a terminal's foreground group)."""

    def __init__(self, tmp_path: Path, **settings: str) -> None:
        self.data = tmp_path / "var"
        self.port = free_port()
        self.env = {**os.environ, "CONVEYOR_DATA_DIR": str(self.data), "CONVEYOR_API_PORT": str(self.port),
                    "CONVEYOR_FLOWER_PORT": str(free_port()),
                    **{f"CONVEYOR_{k.upper()}": v for k, v in settings.items()}}  # fmt: skip
        self.env.pop("CONVEYOR_DATABASE_URL", None)
        self.env.pop("CONVEYOR_BROKER_URL", None)
        self.log = tmp_path / "up.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([CONVEYOR, "up"], cwd=ROOT, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        wait_for_api(self.base, self.log)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {(self.data / 'admin.key').read_text().strip()}"}

    def submit_sleep(self, seconds: float) -> str:
        response = requests.post(f"{self.base}/v1/jobs", json={"type": "sleep", "payload": {"seconds": seconds}},
                                 headers=self.auth, timeout=10)  # fmt: skip
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(requests.get(f"{self.base}/v1/jobs/{job_id}", headers=self.auth, timeout=10).json())

    def wait_status(self, job_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (job := self.job(job_id))["status"] not in statuses:
            assert time.monotonic() < deadline, (job, self.log.read_text()[-3000:])
            time.sleep(0.2)
        return job

    def ctrl_c(self, timeout: float = 90) -> float:
        """SIGINT to the foreground group, as a terminal's Ctrl-C; returns how long `conveyor up` took to exit."""
        assert self.process is not None
        started = time.monotonic()
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(timeout)
        return time.monotonic() - started

    def ledger(self, job_id: str) -> tuple[Job, list[str]]:
        engine = make_engine(f"sqlite:///{self.data / 'conveyor.db'}")
        try:
            with make_sessionmaker(engine)() as session:
                job = session.get_one(Job, uuid.UUID(job_id))
                kinds = list(session.scalars(select(JobEvent.kind).where(JobEvent.job_id == job.id)
                                             .order_by(JobEvent.id)))  # fmt: skip
                return job, kinds
        finally:
            engine.dispose()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def test_ctrl_c_during_a_job_lets_it_finish_once(tmp_path: Path) -> None:
    up = Up(tmp_path)
    try:
        up.start()
        job_id = up.submit_sleep(5)
        up.wait_status(job_id, {"running"})
        up.ctrl_c()
        assert up.process is not None and up.process.returncode == 0
        job, kinds = up.ledger(job_id)
        assert (job.status, job.attempt) == ("succeeded", 1), up.log.read_text()[-3000:]
        assert kinds.count("running") == 1 and kinds[-1] == "succeeded"
    finally:
        up.stop()


def test_a_job_longer_than_the_grace_is_released_and_runs_again_at_the_next_start(tmp_path: Path) -> None:
    up = Up(tmp_path, shutdown_grace_seconds="1", lease_seconds="300")
    try:
        up.start()
        job_id = up.submit_sleep(8)
        up.wait_status(job_id, {"running"})
        up.ctrl_c()
        job, kinds = up.ledger(job_id)
        # released at once: failed attempt, to run again, though its 300 s lease had not run out
        assert job.status == "retrying" and job.error["type"] == "WorkerStopped", (job.status, kinds)
        assert "released 1 jobs" in up.log.read_text()
        up.start()
        done = up.wait_status(job_id, {"succeeded", "failed"}, timeout=60)
        assert (done["status"], done["attempt"]) == ("succeeded", 2)
        assert up.ledger(job_id)[1].count("running") == 2
        up.ctrl_c()
    finally:
        up.stop()
