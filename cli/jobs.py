"""`conveyor submit` (one job or a batch, optionally followed to its end) and `conveyor status`, over the API."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from cli.client import ApiClient, api_option, call_api, client_for, problem_text
from cli.progress import follow, percent_done


def _describe(job: dict[str, Any]) -> str:
    line = f"{job['id']}  {job['status']:<9}  attempt {job['attempt']}/{job['max_attempts']}"
    if (percent := percent_done(job)) is not None:
        line += f"  {percent}"
    if job.get("error") and job["status"] in ("failed", "retrying"):
        line += f"  {job['error'].get('type')}: {job['error'].get('message')}"
    return line


BATCH_SIZE = 1000  # jobs per POST /v1/jobs:batch


def read_batch_file(path: str) -> list[dict[str, Any]]:
    """Job bodies from a JSON array or JSON Lines (one job per line, as for POST /v1/jobs)."""
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    try:
        if text.lstrip().startswith("["):
            jobs = json.loads(text)
        else:
            jobs = [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"not JSON or JSON Lines: {exc}", param_hint="--batch") from None
    if not all(isinstance(job, dict) for job in jobs):
        raise click.BadParameter("every job must be a JSON object like the body of POST /v1/jobs", param_hint="--batch")
    return jobs  # type: ignore[no-any-return]  # checked above: a list of JSON objects


def submit_batch(client: ApiClient, jobs: list[dict[str, Any]]) -> None:
    accepted = existing = rejected = 0
    for start in range(0, len(jobs), BATCH_SIZE):
        result = client.request("POST", "/v1/jobs:batch", {"jobs": jobs[start : start + BATCH_SIZE]})
        accepted, existing = accepted + result["accepted"], existing + result["existing"]
        rejected += result["rejected"]
        for item in result["items"]:
            if item["job"]:
                click.echo(item["job"]["id"])
            else:
                click.echo(f"job {start + item['index'] + 1}: {problem_text(item['error'])}", err=True)
        click.echo(f"{min(start + BATCH_SIZE, len(jobs))}/{len(jobs)} sent", err=True)
    click.echo(f"accepted {accepted}, existing {existing}, rejected {rejected}", err=True)
    if rejected:
        sys.exit(1)


@click.command()
@click.argument("job_type", required=False)
@click.option("--payload", default="{}", help="The job's payload as JSON.")
@click.option("--priority", type=click.IntRange(0, 9))
@click.option("--delay", "delay_seconds", type=float, help="Start after this many seconds.")
@click.option("--idempotency-key")
@click.option("--batch", "batch_file", help="Submit every job in FILE (JSON array or JSON Lines; - for stdin).")
@click.option("--wait", is_flag=True, help="Wait for the job to finish, showing progress.")
@api_option
def submit(
    job_type: str | None,
    payload: str,
    priority: int | None,
    delay_seconds: float | None,
    idempotency_key: str | None,
    batch_file: str | None,
    wait: bool,
    api: str | None,
) -> None:
    """Submit a job of JOB_TYPE and print its id (with --wait, follow it to the end), or many with --batch."""
    client = client_for(api)
    if batch_file:
        call_api(lambda: submit_batch(client, read_batch_file(batch_file)))
        return
    if not job_type:
        raise click.UsageError("give a JOB_TYPE, or --batch FILE")
    try:
        body: dict[str, Any] = {"type": job_type, "payload": json.loads(payload)}
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from None
    if priority is not None:
        body["priority"] = priority
    if delay_seconds is not None:
        body["delay_seconds"] = delay_seconds
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    job = call_api(lambda: client.request("POST", "/v1/jobs", body, headers=headers))
    if not wait:
        click.echo(job["id"])
        return
    job = call_api(lambda: follow(client, job, _describe, interval=0.3))
    click.echo(_describe(job))
    if job["status"] == "succeeded":
        click.echo(json.dumps(call_api(lambda: client.request("GET", f"/v1/jobs/{job['id']}/result"))["data"]))
    else:
        sys.exit(1)


@click.command()
@click.argument("job_id")
@click.option("--events", is_flag=True, help="Also print the job's audit trail.")
@api_option
def status(job_id: str, events: bool, api: str | None) -> None:
    """Show a job's status, progress and error."""
    client = client_for(api)
    click.echo(_describe(call_api(lambda: client.request("GET", f"/v1/jobs/{job_id}"))))
    if events:
        for event in call_api(lambda: client.request("GET", f"/v1/jobs/{job_id}/events"))["items"]:
            click.echo(
                f"  {event['created_at']}  {event['kind']:<16} attempt {event['attempt']}  {event['worker'] or ''}"
            )
