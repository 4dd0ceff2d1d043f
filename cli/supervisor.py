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
from typing import Any

import honcho.manager
from honcho.manager import Manager

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


def start_broker(command: str, env: dict[str, str]) -> subprocess.Popen[Any]:
    """The embedded Redis, in a session of its own: Ctrl-C in the terminal does not reach it."""
    return subprocess.Popen(shlex.split(command), env=env, start_new_session=True)


def stop_broker(broker: subprocess.Popen[Any]) -> None:
    broker.terminate()
    try:
        broker.wait(BROKER_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        broker.kill()
        broker.wait()
