"""What the CLI shows while it waits for a job to end."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from typing import Any, BinaryIO

import click

from cli.client import ApiClient

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
LINE_WIDTH = 100


def percent_done(job: dict[str, Any]) -> str | None:
    """The job's progress as `42.0%`, when it reports a total."""
    progress = job.get("progress") or {}
    return f"{100 * (progress.get('done') or 0) / progress['total']:5.1f}%" if progress.get("total") else None


def follow(client: ApiClient, job: dict[str, Any], describe: Callable[[dict[str, Any]], str], *,
           interval: float) -> dict[str, Any]:  # fmt: skip
    """Poll `job` until it ends and return its last state. On a terminal one stderr line is redrawn in place;
    redirected to a file or a pipe, a line is written each time what it says changes (no carriage returns)."""
    live = sys.stderr.isatty()
    shown = None
    while job["status"] not in TERMINAL:
        line = describe(job)
        if live:
            click.echo("\r" + line[:LINE_WIDTH].ljust(LINE_WIDTH), nl=False, err=True)
        elif line != shown:
            click.echo(line, err=True)
        shown = line
        time.sleep(interval)
        job = client.request("GET", f"/v1/jobs/{job['id']}")
    if live and shown is not None:
        click.echo("\r" + " " * LINE_WIDTH + "\r", nl=False, err=True)
    return job


class UploadProgress(io.RawIOBase):
    """A file being sent, showing how much of it has gone: a bar redrawn on a terminal, a line per tenth of the file
    when stderr is a file or a pipe."""

    def __init__(self, file: BinaryIO, total: int, label: str) -> None:
        self._file = file
        self.total = max(total, 1)
        self.label = label
        self.sent = 0
        self._live = sys.stderr.isatty()
        self._drawn = 0.0
        self._tenth = -1

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self._file.readinto(buffer)  # type: ignore[attr-defined]
        self.sent += count or 0
        self._show()
        return int(count or 0)

    def _show(self) -> None:
        share = min(self.sent / self.total, 1.0)
        line = f"uploading {self.label}  {meter(share)}  {size(self.sent)} of {size(self.total)}"
        if self._live:
            now = time.monotonic()
            if now - self._drawn >= 0.1 or self.sent >= self.total:
                click.echo("\r" + line[:LINE_WIDTH].ljust(LINE_WIDTH), nl=False, err=True)
                self._drawn = now
        elif int(share * 10) > self._tenth:
            self._tenth = int(share * 10)
            click.echo(line, err=True)

    def done(self) -> None:
        if self._live:
            click.echo("\r" + " " * LINE_WIDTH + "\r", nl=False, err=True)


def meter(share: float, width: int = 24) -> str:
    """`[#####-------]  42.0%` for a share done (capped at all of it)."""
    share = min(share, 1.0)
    filled = int(share * width)
    return "[" + "#" * filled + "-" * (width - filled) + f"] {100 * share:5.1f}%"


def size(count: int) -> str:
    return f"{count / 1e6:,.1f} MB" if count >= 1e6 else f"{count / 1e3:,.0f} kB"
