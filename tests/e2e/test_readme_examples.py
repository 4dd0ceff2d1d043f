"""The README's shell examples, run in order as written against a running deployment: every curl answers 2xx (curl
--fail-with-body), every CLI command exits 0, and the schedule file syncs beside the schedule made over the API.

What a reader would fill in is filled in the same way: the port is the test's, the job id is the one the first POST
answered (its Location header), `ID` is the dataset the upload made, `flights.csv` is a small file of flights, and the
webhook's public URL (which the SSRF guard would resolve) is a loopback one the test deployment allows. A reader would
wait for the job before asking for its result, and so does the test. Left out: the compose block (Docker) and the
doctor's sample output (it shows failures on purpose)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import running_cluster
from tests.e2e.harness import ROOT, Cluster

pytestmark = pytest.mark.e2e

README = ROOT / "README.md"
BLOCK = re.compile(r"^```(sh|bash|console|yaml)\n(.*?)^```", re.MULTILINE | re.DOTALL)
FILE_NAMED = re.compile(r"^# ([\w.-]+\.yaml)\n")  # a YAML block a later command reads by that name
EXAMPLE_JOB = "0b6f5c0e-4f7e-4c1e-9a59-7b0a8f0f3b1d"
FLIGHTS = "carrier,origin,dep_delay\nAA,JFK,10\nUA,JFK,-5\nDL,BOS,7\n"
CLI = str(Path(sys.executable).parent / "conveyor")


def commands(kind: str, text: str) -> list[str]:
    """A block's commands: in a console block the `$ ` lines (and their continuations), in a script block each
    command with its continuation lines and the lines of a quoted argument that spans several."""
    lines = text.splitlines()
    if kind == "console" or any(line.startswith("$ ") for line in lines):  # prompts: the rest is their output
        prompted, continued = [], False
        for line in lines:
            if line.startswith("$ ") or continued:
                prompted.append(line[2:] if line.startswith("$ ") else line)
                continued = line.endswith("\\")
        lines = prompted
    found: list[str] = []
    current = ""
    for line in lines:
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line + "\n"
        if not current.rstrip().endswith("\\") and current.count("'") % 2 == 0:
            found.append(current.strip())
            current = ""
    return found


def readme_commands() -> list[tuple[str, str]]:
    """(block kind, command) of every block that talks to the API or runs the CLI, in README order."""
    found: list[tuple[str, str]] = []
    for kind, text in BLOCK.findall(README.read_text(encoding="utf-8")):
        if kind == "yaml":
            if text.startswith("schedules:") or FILE_NAMED.match(text):
                found.append(("yaml", text))
            continue
        block = commands(kind, text)
        if any("8000" in c or "conveyor " in c for c in block) and not any("docker" in c for c in block):
            found.extend((kind, c) for c in block if not c.startswith("conveyor doctor"))
    return found


def test_the_readme_has_the_examples_this_test_runs() -> None:
    runs = [command for _, command in readme_commands()]
    assert any("POST http://127.0.0.1:8000/v1/jobs" in c for c in runs)  # the quickstart
    assert any("/v1/schedules" in c for c in runs) and any("/v1/datasets" in c for c in runs)
    assert any("/v1/webhooks" in c for c in runs) and any("/pause" in c for c in runs)
    assert any("/v1/workflows" in c for c in runs) and any("conveyor workflow submit" in c for c in runs)


def test_the_readme_examples_run_in_order(tmp_path: Path) -> None:
    with running_cluster("embedded", tmp_path) as cluster:
        work = tmp_path / "reader"
        (work / "var").mkdir(parents=True)
        (work / "var" / "admin.key").write_text(cluster.key + "\n")
        (work / "flights.csv").write_text(FLIGHTS)
        env = cluster.env | {"CONVEYOR_API_URL": cluster.base, "CONVEYOR_API_KEY": cluster.key}
        job_id = dataset_id = None
        prelude = ""
        ran = 0
        for kind, command in readme_commands():
            if kind == "yaml" and (named := FILE_NAMED.match(command)):  # a file the next commands read
                (work / named.group(1)).write_text(command)
                continue
            if kind == "yaml":  # the schedule file, synced with the CLI as the README says
                (work / "schedules.yaml").write_text(command)
                command = "conveyor schedule sync schedules.yaml"
            script = _as_run_here(command, cluster, job_id=job_id, dataset_id=dataset_id)
            if script.startswith("KEY="):
                prelude = script.replace("var/admin.key", str(work / "var" / "admin.key")) + "\n"
                continue
            if job_id and "/result" in script:
                cluster.wait_job(job_id)  # a reader waits for the job before asking for its result
            if dataset_id and re.search(r"/rows|/rejects", script):
                _wait_dataset(cluster, dataset_id)
            if "workflow submit" in script:  # a reader runs the CLI's report once the curl one has finished
                for flow in cluster.request("GET", "/v1/workflows").json()["items"]:
                    _wait_workflow(cluster, flow["id"])
            patience = time.monotonic() + 30
            # the logs a reader greps are the processes' own files; the harness writes them as api.log, worker.log
            cwd = cluster.directory if script.startswith("grep ") else work
            done = _run(prelude + script, cwd, env)
            while script.startswith("grep ") and "worker.executor" not in done.stdout and time.monotonic() < patience:
                time.sleep(0.3)  # a reader looks once the worker has run the job
                done = _run(prelude + script, cwd, env)
            assert done.returncode == 0, f"{command}\n→ {done.returncode}\n{done.stdout}\n{done.stderr}"
            ran += 1
            if match := re.search(r"^Location: /v1/jobs/([0-9a-f-]{36})", done.stdout, re.MULTILINE):
                job_id = job_id or match.group(1)
            if match := re.search(r'"dataset":\s*\{[^{}]*"id":\s*"([0-9a-f-]{36})"', done.stdout):
                dataset_id = match.group(1)
            if script.startswith("grep "):  # the request's lines: the API's and the worker's, by one request id
                lines = done.stdout.replace(" ", "")
                assert '"logger":"conveyor.api"' in lines and '"logger":"worker.executor"' in lines, done.stdout
        assert ran >= 20 and job_id is not None and dataset_id is not None
        names = {s["name"] for s in cluster.request("GET", "/v1/schedules").json()["items"]}
        assert {"nightly-import", "nightly-cleanup", "heartbeat"} <= names  # both schedule examples, side by side
        assert cluster.request("GET", f"/v1/datasets/{dataset_id}").json()["row_count"] == 3
        flows = cluster.request("GET", "/v1/workflows").json()["items"]
        assert [f["name"] for f in flows] == ["flights-report", "flights-report"]  # the CLI's, then curl's
        assert [f["status"] for f in flows] == ["succeeded", "succeeded"]


def _as_run_here(command: str, cluster: Cluster, *, job_id: str | None, dataset_id: str | None) -> str:
    script = command.replace("http://127.0.0.1:8000", cluster.base).replace("localhost:8000", cluster.base)
    script = re.sub(r"\bcurl ", "curl --fail-with-body ", script)
    script = re.sub(r"(^|\s)(\.venv/bin/)?conveyor ", rf"\1{CLI} ", script)
    script = script.replace("https://hooks.example.com/conveyor", "http://127.0.0.1:9/conveyor")
    if job_id:
        script = script.replace(EXAMPLE_JOB, job_id)
    if dataset_id:
        script = script.replace("/v1/datasets/ID", f"/v1/datasets/{dataset_id}")
    return script


def _run(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", "set -eo pipefail\n" + script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def _wait_workflow(cluster: Cluster, workflow_id: str) -> None:
    deadline = time.monotonic() + 90
    while (flow := cluster.request("GET", f"/v1/workflows/{workflow_id}").json())["finished_at"] is None:
        assert time.monotonic() < deadline, f"the workflow never finished: {flow}"
        time.sleep(0.3)
    assert flow["status"] == "succeeded", flow


def _wait_dataset(cluster: Cluster, dataset_id: str) -> None:
    deadline = time.monotonic() + 60
    while cluster.request("GET", f"/v1/datasets/{dataset_id}").json()["status"] != "ready":
        assert time.monotonic() < deadline, "the dataset never became ready"
        time.sleep(0.2)
