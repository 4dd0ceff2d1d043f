"""`conveyor workflow`: submit a workflow from a YAML or JSON file (and follow its steps live), show, list, cancel
and retry workflows, over the API."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import click
import yaml

from cli.client import ApiClient, api_option, call_api, client_for

LINE_WIDTH = 100
POLL_SECONDS = 0.5


ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def read_definition(path: str) -> dict[str, Any]:
    """A workflow as POST /v1/workflows takes it, from YAML (or JSON, which is YAML) or - for stdin; `${NAME}` is
    replaced by the environment variable NAME (an id made by an earlier command, say)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(ENV_REFERENCE.sub(_from_environment, text))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"cannot read it: {exc}", param_hint="FILE") from None
    if not isinstance(data, dict):
        raise click.BadParameter("a workflow is a mapping with `name` and `steps`", param_hint="FILE")
    return data


def _from_environment(match: re.Match[str]) -> str:
    name = match.group(1)
    if name not in os.environ:
        raise click.BadParameter(f"${{{name}}} is not set in the environment", param_hint="FILE")
    return os.environ[name]


def step_line(step: dict[str, Any]) -> str:
    jobs = step["jobs"]
    line = f"  {step['name']:<20} {step['status']:<9}"
    if step["mapped"] or jobs["total"] > 1:
        line += f"  {jobs['total'] - jobs['unfinished']}/{jobs['total']} jobs"
    elif step["job_id"]:
        line += f"  {step['job_id']}"
    if step["attempts"] > 1:
        line += f"  {step['attempts']} attempts"
    if step["error"] and step["status"] in ("failed", "skipped", "cancelled"):
        line += f"  {step['error'].get('type')}: {step['error'].get('message')}"
    return line[:LINE_WIDTH] if sys.stderr.isatty() else line


def summary_line(flow: dict[str, Any]) -> str:
    progress = flow["progress"]
    line = (f"{flow['id']}  {flow['name']}  {flow['status']}  {progress['steps_finished']}/{progress['steps_total']}"
            f" steps  {progress['jobs_finished']}/{progress['jobs_total']} jobs")  # fmt: skip
    if flow["failed_step"]:
        line += f"  (failed step: {flow['failed_step']})"
    return line


def describe(flow: dict[str, Any]) -> list[str]:
    return [summary_line(flow), *(step_line(step) for step in flow["steps"])]


def follow(client: ApiClient, flow: dict[str, Any]) -> dict[str, Any]:
    """Poll until every step has finished. On a terminal the block of lines is redrawn in place; redirected, a
    step's line is written each time it changes."""
    live = sys.stderr.isatty()
    shown: list[str] = []
    while True:
        lines = describe(flow)
        if live:
            if shown:
                click.echo(f"\x1b[{len(shown)}F", nl=False, err=True)  # back to the block's first line
            for line in lines:
                click.echo("\x1b[2K" + line, err=True)
        else:
            for line in lines[1:]:
                if line not in shown:
                    click.echo(line, err=True)
        shown = lines
        if flow["finished_at"] is not None:
            return flow
        time.sleep(POLL_SECONDS)
        flow = client.request("GET", f"/v1/workflows/{flow['id']}")


def _finish(client: ApiClient, flow: dict[str, Any], wait: bool) -> None:
    if not wait:
        click.echo(flow["id"])
        return
    flow = call_api(lambda: follow(client, flow))
    click.echo(summary_line(flow))
    if flow["status"] != "succeeded":
        sys.exit(1)


@click.group()
def workflow() -> None:
    """Workflows: submit, show, list, cancel, retry."""


@workflow.command()
@click.argument("file")
@click.option("--wait", is_flag=True, help="Follow its steps until every one has finished.")
@click.option("--idempotency-key", help="Makes a retried submit safe: the same key answers the same workflow.")
@api_option
def submit(file: str, wait: bool, idempotency_key: str | None, api: str | None) -> None:
    """Submit the workflow in FILE (YAML or JSON; - for stdin) and print its id (with --wait, follow it)."""
    client = client_for(api)
    definition = read_definition(file)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    _finish(client, call_api(lambda: client.request("POST", "/v1/workflows", definition, headers=headers)), wait)


@workflow.command()
@click.argument("workflow_id")
@click.option("--events", is_flag=True, help="Also print the workflow's audit trail.")
@click.option("--json", "as_json", is_flag=True, help="Print the workflow as the API answers it.")
@api_option
def show(workflow_id: str, events: bool, as_json: bool, api: str | None) -> None:
    """Show a workflow: its status, and each step's status, jobs, attempts and error."""
    client = client_for(api)
    flow = call_api(lambda: client.request("GET", f"/v1/workflows/{workflow_id}"))
    if as_json:
        click.echo(json.dumps(flow, indent=2))
        return
    for line in describe(flow):
        click.echo(line)
    if events:
        for event in call_api(lambda: client.request("GET", f"/v1/workflows/{workflow_id}/events"))["items"]:
            click.echo(f"  {event['created_at']}  {event['kind']:<20} {event['step'] or ''}")


@workflow.command(name="list")
@click.option("--status", help="Comma-separated statuses, e.g. running,failed.")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@api_option
def list_workflows(status: str | None, limit: int, api: str | None) -> None:
    """List workflows, newest first."""
    client = client_for(api)
    query = f"?limit={limit}" + (f"&status={status}" if status else "")
    for flow in call_api(lambda: client.request("GET", f"/v1/workflows{query}"))["items"]:
        click.echo(f"{flow['id']}  {flow['status']:<9}  {flow['created_at']}  {flow['name']}")


@workflow.command()
@click.argument("workflow_id")
@api_option
def cancel(workflow_id: str, api: str | None) -> None:
    """Cancel every unfinished step of a workflow."""
    client = client_for(api)
    click.echo(summary_line(call_api(lambda: client.request("POST", f"/v1/workflows/{workflow_id}/cancel"))))


@workflow.command()
@click.argument("workflow_id")
@click.option("--wait", is_flag=True, help="Follow its steps until every one has finished.")
@api_option
def retry(workflow_id: str, wait: bool, api: str | None) -> None:
    """Run a failed or cancelled workflow's unsucceeded steps again."""
    client = client_for(api)
    _finish(client, call_api(lambda: client.request("POST", f"/v1/workflows/{workflow_id}/retry")), wait)
