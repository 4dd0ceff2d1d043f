"""`conveyor up`'s process group: honcho's Manager, stopping gracefully.

Ctrl-C (or SIGTERM) sends SIGTERM to each process's main pid only, not to its process group: Celery's main process
then shuts down warm (it stops taking messages and waits for its pool children to finish their jobs), gunicorn's
finishes its requests. What still runs `grace` seconds after the first process stopped is killed, group and all; the
jobs those workers held are then released to run again at once (core.reconcile.release_jobs_of) instead of waiting
for their leases. The embedded broker runs outside the group and stops last: a worker that lost its broker mid-job
would cancel the job (worker_cancel_long_running_tasks_on_connection_loss).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import honcho.manager
from honcho.manager import Manager

BROKER_START_SECONDS = 15
STOP_SIGNAL_CODES = (130, 143)  # honcho's return code after SIGINT, SIGTERM
BROKER_STOP_SECONDS = 10


class GracefulManager(Manager):  # type: ignore[misc]  # honcho is untyped
    def __init__(self, grace: float) -> None:
        super().__init__()
        self.grace = grace
        self.killed: list[str] = []  # the processes that did not stop within the grace

    def add_process(self, name: str, cmd: str, **options: Any) -> Any:
        # honcho runs each command through `sh -c`: exec makes the process itself the pid that gets the SIGTERM
        # (a signalled shell would neither pass it on nor stop).
        return super().add_process(name, f"exec {cmd}", **options)

    @property
    def stop_requested(self) -> bool:
        """Ctrl-C or SIGTERM stopped the group (honcho then sets 130 or 143 before any process stops), not a process
        that exited on its own."""
        return self.returncode in STOP_SIGNAL_CODES

    def loop(self) -> None:
        # honcho kills what is left KILL_WAIT seconds after the first process stopped (5 by default): the grace.
        honcho.manager.KILL_WAIT = self.grace
        super().loop()

    def _killall(self, force: bool = False) -> None:
        for name, process in self._processes.items():
            if "returncode" in process or process.get("pid") is None:
                continue
            try:
                if force:
                    self._system_print(f"{name} did not stop within {self.grace:g} s: killing it\n")
                    os.killpg(process["pid"], signal.SIGKILL)
                    self.killed.append(name)
                else:
                    self._system_print(f"stopping {name} (running jobs finish first)\n")
                    os.kill(process["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass


class BrokerFailed(RuntimeError):
    pass


def start_broker(command: str, env: dict[str, str], socket_path: Path, log_path: Path) -> subprocess.Popen[Any]:
    """The embedded Redis, in a session of its own (Ctrl-C in the terminal does not reach it), started before the
    processes that connect to it: returns once it listens on `socket_path`; if it stops first, BrokerFailed shows
    the end of its log."""
    socket_path.unlink(missing_ok=True)  # a stale socket of a killed run would pass for a listening broker
    broker = subprocess.Popen(shlex.split(command), env=env, start_new_session=True)
    deadline = time.monotonic() + BROKER_START_SECONDS
    while not socket_path.exists():
        if broker.poll() is not None or time.monotonic() > deadline:
            stop_broker(broker)
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else "(no log)"
            raise BrokerFailed(f"The embedded broker (redis-server) did not start. The end of {log_path}:\n{tail}")
        time.sleep(0.05)
    return broker


def stop_broker(broker: subprocess.Popen[Any]) -> None:
    broker.terminate()
    try:
        broker.wait(BROKER_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        broker.kill()
        broker.wait()
