"""Real Conveyor processes for end-to-end tests: api (gunicorn), worker, maintenance worker and beat, each in
its own process group, started and stopped by PID; the tests talk HTTP and read the database."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cli.processes import process_commands
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade_database
from core.models import Job, JobEvent
from core.settings import Settings
from tests.support.keys import issue_key

TERMINAL = {"succeeded", "failed", "cancelled"}
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Cluster:
    """The processes of one deployment, configured through CONVEYOR_* like production."""

    ROLES = ("api", "worker", "maintenance", "beat")

    def __init__(self, directory: Path, database_url: str, broker_url: str, **settings: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "CONVEYOR_DATA_DIR": str(directory),
            "CONVEYOR_DATABASE_URL": database_url,
            "CONVEYOR_BROKER_URL": broker_url,
            "CONVEYOR_API_PORT": str(self.port),
            "CONVEYOR_LEASE_SECONDS": "3",
            "CONVEYOR_RECONCILE_INTERVAL": "0.5",
            "CONVEYOR_BACKLOG_INTERVAL": "0.5",
            "CONVEYOR_SCHEDULE_TICK": "0.5",
            "CONVEYOR_REPUBLISH_AFTER": "10",
            "CONVEYOR_WORKER_CONCURRENCY": "2",
            "CONVEYOR_PUBLISH_TIMEOUT": "1",
            "CONVEYOR_WEBHOOK_ALLOW": "127.0.0.1",  # the tests' webhook receivers listen on loopback
            "PROMETHEUS_MULTIPROC_DIR": str(directory / "metrics"),  # shared by the processes, as `conveyor up` does
            **{f"CONVEYOR_{k.upper()}": v for k, v in settings.items()},
        }
        (directory / "metrics").mkdir(exist_ok=True)
        self.base = f"http://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.engine: Engine = make_engine(database_url)
        self.http = requests.Session()
        upgrade_database(database_url)
        self.key = issue_key(self.engine, self.settings())  # an admin of tenant `default`, as `conveyor up` makes
        self.http.headers["Authorization"] = f"Bearer {self.key}"

    def settings(self) -> Settings:
        return Settings(**{k[len("CONVEYOR_") :].lower(): v for k, v in self.env.items() if k.startswith("CONVEYOR_")})

    # --- processes -------------------------------------------------------------------------------------------
    def start(self, *roles: str) -> None:
        commands = process_commands(self.settings())
        for role in roles or self.ROLES:
            self._spawn(role, commands[role], self.env)

    def start_another(self, name: str, role: str, **settings: str) -> None:
        """One more process of `role` under its own name (e.g. a second beat), with settings of its own."""
        env = self.env | {f"CONVEYOR_{k.upper()}": v for k, v in settings.items()}
        overrides = {k[len("CONVEYOR_") :].lower(): v for k, v in env.items() if k.startswith("CONVEYOR_")}
        self._spawn(name, process_commands(Settings(**overrides))[role], env)

    def _spawn(self, name: str, command: str, env: dict[str, str]) -> None:
        log = open(self.directory / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(
            shlex.split(command), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self, *roles: str, sig: int = signal.SIGTERM, timeout: float = 20, group: bool = True) -> None:
        """Signal each role's process group (or, group=False, only its main process, as Docker and systemd
        do), then SIGKILL the group if it has not exited within the timeout."""
        for role in roles or tuple(self.procs):
            proc = self.procs.pop(role, None)
            if proc is None or proc.poll() is not None:
                continue
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def close(self) -> None:
        self.stop()
        self.http.close()
        self.engine.dispose()

    def logs(self, role: str, tail: int = 3000) -> str:
        path = self.directory / f"{role}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    # --- HTTP ------------------------------------------------------------------------------------------------
    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.http.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError("API not ready:\n" + self.logs("api"))

    def wait_workers(self, timeout: float = 60) -> None:
        """Ready when a job goes through end to end (the worker consumes and beat ticks)."""
        job = self.submit("echo", {"message": "warm-up"})
        self.wait_job(job["id"], timeout=timeout)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def new_http(self) -> requests.Session:
        """A client session of its own (one per thread), sending the cluster's admin key."""
        http = requests.Session()
        http.headers.update(self.auth)
        return http

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, self.base + path, timeout=30, **kwargs)

    def flower(self, path: str) -> Any:
        """GET Flower's API at `path` (e.g. /tasks) with FLOWER_BASIC_AUTH; it must answer 200. Raises
        requests.ConnectionError while Flower is not listening yet."""
        user, _, password = self.env.get("FLOWER_BASIC_AUTH", "").partition(":")
        url = f"http://127.0.0.1:{self.settings().flower_port}/api{path}"
        response = requests.get(url, auth=(user, password) if user else None, timeout=10)
        assert response.status_code == 200, (response.status_code, self.logs("flower"))
        return response.json()

    def submit(self, job_type: str, payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
        response = self.request("POST", "/v1/jobs", json={"type": job_type, "payload": payload, **fields})
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        return body

    def job(self, job_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.request("GET", f"/v1/jobs/{job_id}").json()
        return body

    def wait_job(self, job_id: str, statuses: set[str] = TERMINAL, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} still {job.get('status')} after {timeout}s\n" + self.logs("worker"))

    def events(self, job_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.request("GET", f"/v1/jobs/{job_id}/events").json()["items"]
        return items

    # --- database (the source of truth) --------------------------------------------------------------------
    def session(self) -> Session:
        return make_sessionmaker(self.engine)()

    def row(self, job_id: str) -> Job:
        with self.session() as session:
            job = session.get(Job, uuid.UUID(job_id))
            assert job is not None
            return job

    def event_kinds(self, job_id: str) -> list[str]:
        with self.session() as session:
            query = select(JobEvent.kind).where(JobEvent.job_id == uuid.UUID(job_id)).order_by(JobEvent.id)
            return list(session.scalars(query))


def python() -> str:
    return sys.executable
