"""CPU time by role, from /proc: what a job costs each process, which the machine's speed of the moment does not
change the way it changes jobs/s (this VM's speed varies by 1.5x from one hour to the next)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
Selector = Callable[[int, int, str], bool]  # (pid, process group, command line) -> is it one of the role's


def _processes() -> list[tuple[int, int, str, float]]:
    """(pid, process group, command line, CPU seconds) of every live process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # exited meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # after the command: state, ppid, pgrp, ..., utime (12th), stime (13th)
        found.append((int(entry.name), int(fields[2]), cmdline, (int(fields[11]) + int(fields[12])) / TICKS))
    return found


def group(pgid: int) -> Selector:
    """The processes of a process group: a role started with start_new_session, its children included."""
    return lambda pid, pgrp, cmdline: pgrp == pgid


def named(text: str) -> Selector:
    """The processes whose command line (or, for PostgreSQL backends, title) contains `text`."""
    return lambda pid, pgrp, cmdline: text in cmdline


def cpu_seconds(roles: Mapping[str, Selector]) -> dict[str, float]:
    processes = _processes()
    return {
        role: sum(cpu for pid, pgrp, cmd, cpu in processes if select(pid, pgrp, cmd)) for role, select in roles.items()
    }


class CpuMeter:
    """CPU seconds each role spends between `start()` and `per_job(jobs)` (ms per job, by role)."""

    def __init__(self, roles: Mapping[str, Selector]) -> None:
        self.roles = dict(roles)
        self.before: dict[str, float] = {}

    def start(self) -> None:
        self.before = cpu_seconds(self.roles)

    def per_job(self, jobs: int, **extra_seconds: float) -> dict[str, float]:
        after = cpu_seconds(self.roles)
        spent = {role: after[role] - self.before[role] for role in self.roles} | extra_seconds
        return {role: round(seconds / jobs * 1000, 3) for role, seconds in spent.items()}
