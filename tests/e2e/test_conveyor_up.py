"""`conveyor up`, the newcomer's command: everything starts on the embedded default, a job goes through the CLI,
Flower answers, and Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import ROOT, free_port

pytestmark = pytest.mark.e2e
CONVEYOR = str(Path(sys.executable).with_name("conveyor"))


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(state) and not state.startswith("Z")


def wait_for_api(base: str, log: Path, timeout: float = 60) -> None:
    """Until `conveyor up`'s API is ready; the log of the start otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    pytest.fail(log.read_text()[-3000:])


def test_conveyor_up_runs_and_stops_cleanly(tmp_path: Path) -> None:
    api_port, flower_port = free_port(), free_port()
    schedules = tmp_path / "schedules.yaml"
    schedules.write_text(
        "schedules:\n  - {name: every-second, type: echo, interval_seconds: 1, payload: {message: hi}}\n"
    )
    env = {
        **os.environ,
        "CONVEYOR_SCHEDULES_FILE": str(schedules),
        "CONVEYOR_DATA_DIR": str(tmp_path / "var"),
        "CONVEYOR_API_PORT": str(api_port),
        "CONVEYOR_FLOWER_PORT": str(flower_port),
        "HOME": str(tmp_path / "home"),  # nothing of conveyor up's may land outside DATA_DIR (gunicorn's socket did)
    }
    (tmp_path / "home").mkdir()
    env.pop("CONVEYOR_DATABASE_URL", None)
    env.pop("CONVEYOR_BROKER_URL", None)
    log = open(tmp_path / "up.log", "wb")
    up = subprocess.Popen([CONVEYOR, "up"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                          start_new_session=True)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{api_port}"
        wait_for_api(base, tmp_path / "up.log")
        # the first start made an admin key: printed once, kept in DATA_DIR/admin.key readable by its owner only
        key_file = tmp_path / "var" / "admin.key"
        key = key_file.read_text().strip()
        assert re.fullmatch(r"cvk_[0-9a-f]{16}_[0-9A-Za-z]{43}", key) and key_file.stat().st_mode & 0o777 == 0o600
        assert key in (tmp_path / "up.log").read_text()
        auth = {"Authorization": f"Bearer {key}"}
        assert requests.get(f"{base}/v1/jobs", timeout=5).status_code == 401

        submitted = subprocess.run(
            [CONVEYOR, "submit", "sleep", "--payload", '{"seconds": 0.5}', "--wait", "--api", base],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr + (tmp_path / "up.log").read_text()[-2000:]
        job_id = submitted.stdout.split()[0]
        # redirected, the progress is a line per change, never a carriage return
        assert "\r" not in submitted.stderr and f"{job_id}  running" in submitted.stderr, submitted.stderr
        refused = subprocess.run([CONVEYOR, "submit", "sleep", "--payload", '{"seconds": "soon"}', "--api", base],
                                 capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
        assert refused.returncode == 1 and "HTTP 422" in refused.stderr, refused.stderr
        assert "\n  payload.seconds: " in refused.stderr and "[{" not in refused.stderr  # a line per field, no repr
        assert requests.get(f"{base}/v1/jobs/{job_id}", headers=auth, timeout=5).json()["status"] == "succeeded"
        status = subprocess.run([CONVEYOR, "status", job_id, "--events", "--api", base], capture_output=True, text=True,
                                env=env)  # fmt: skip
        assert "succeeded" in status.stdout and "running" in status.stdout

        assert (tmp_path / "var" / "conveyor.db").exists() and (tmp_path / "var" / "redis.sock").exists()
        # Flower always asks for credentials outside CONVEYOR_AUTH=off: `conveyor up` made them in DATA_DIR
        assert requests.get(f"http://127.0.0.1:{flower_port}/api/tasks", timeout=10).status_code == 401
        user, password = (tmp_path / "var" / "flower.auth").read_text().strip().split(":", 1)
        assert password not in (tmp_path / "up.log").read_text()
        flower_http = requests.Session()
        flower_http.auth = (user, password)
        flower = flower_http.get(f"http://127.0.0.1:{flower_port}/", timeout=10)
        assert flower.status_code == 200 and "Flower" in flower.text
        deadline = time.monotonic() + 20  # Flower learns of tasks and workers from the workers' events
        tasks: dict[str, dict[str, object]] = {}
        while time.monotonic() < deadline:
            tasks = flower_http.get(f"http://127.0.0.1:{flower_port}/api/tasks", timeout=10).json()
            if any(t.get("name") == "jobs.sleep" and t.get("args") == f"['{job_id}']" for t in tasks.values()):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"Flower never showed the jobs.sleep task: {tasks}")
        # refresh=1 asks the workers over the broker and waits one second for answers: a busy one can miss it
        deadline = time.monotonic() + 20
        workers: dict[str, object] = {}
        while time.monotonic() < deadline and not any(name.startswith("jobs@") for name in workers):
            workers = flower_http.get(f"http://127.0.0.1:{flower_port}/api/workers?refresh=1", timeout=20).json()
        assert any(name.startswith("jobs@") for name in workers), workers
        # the schedule file was synced at start, and beat fires it: seen through the CLI
        listed = subprocess.run([CONVEYOR, "schedule", "list", "--api", base], capture_output=True, text=True, env=env)
        assert "every-second" in listed.stdout and "enabled" in listed.stdout, listed.stderr
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            runs = subprocess.run([CONVEYOR, "schedule", "runs", "every-second", "--api", base], capture_output=True,
                                  text=True, env=env).stdout  # fmt: skip
            if "succeeded" in runs:
                break
            time.sleep(0.5)
        else:
            pytest.fail("the file's schedule never ran:\n" + (tmp_path / "up.log").read_text()[-3000:])
        paused = subprocess.run([CONVEYOR, "schedule", "pause", "every-second", "--api", base], capture_output=True,
                                text=True, env=env)  # fmt: skip
        assert paused.returncode == 0 and "paused" in paused.stdout
        deleted = subprocess.run([CONVEYOR, "schedule", "delete", "every-second", "--api", base], capture_output=True,
                                 text=True, env=env)  # fmt: skip
        assert deleted.returncode == 0 and "deleted schedule every-second" in deleted.stdout, deleted.stderr
        listed = subprocess.run([CONVEYOR, "schedule", "list", "--api", base], capture_output=True, text=True, env=env)
        assert "every-second" not in listed.stdout
        roles = children_of(up.pid)
        assert len(roles) == 6, "redis, api, worker, maintenance, beat, flower"
        assert (tmp_path / "var" / "gunicorn.ctl").exists()
    finally:
        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C
        up.wait(30)
    assert up.returncode == 0  # a stop asked for ends cleanly (`make up` reports no error)
    time.sleep(0.5)
    assert [pid for pid in roles if alive(pid)] == []
    assert list((tmp_path / "home").iterdir()) == []
    # a quiet start and stop: nothing a newcomer cannot act on
    output = (tmp_path / "up.log").read_text()
    for noise in ("superuser privileges", "overcommit", "Inspect method", "Traceback", "Error"):
        assert noise not in output, f"{noise!r} in conveyor up's output:\n{output[-4000:]}"
    if os.geteuid() == 0:
        assert output.count("Running as root") == 1
