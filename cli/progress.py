"""What the CLI shows while it waits for a job to end."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

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
