"""Frontends generate their clients from /openapi.json: a Python client (openapi-python-client) and TypeScript types
(openapi-typescript, checked with tsc --strict) come out with no warning, and the Python one submits and reads a job
through the real app."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from tests.api.conftest import KeyFactory

ROOT = Path(__file__).resolve().parents[2]
NODE_TOOLS = ROOT / "tests" / "clients" / "node_modules" / ".bin"
VENV_BIN = str(Path(sys.executable).parent)

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the document, not the storage


@pytest.fixture
def spec_file(client: FlaskClient, tmp_path: Path) -> Path:
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(client.get("/openapi.json").json))
    return path


def run(*command: str, cwd: Path) -> str:
    """The command's output (stdout and stderr); it must succeed."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # the generator runs ruff
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


@pytest.fixture
def python_client(spec_file: Path, tmp_path: Path) -> Iterator[Any]:
    output = run(sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec_file),
                 "--output-path", str(tmp_path / "conveyor_client"), "--meta", "none", cwd=tmp_path)  # fmt: skip
    assert "warning" not in output.lower() and "skipping" not in output.lower(), output
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("conveyor_client")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == "conveyor_client" or n.startswith("conveyor_client.")]:
            del sys.modules[name]


def test_the_python_client_has_every_model_and_operation_and_works(
    python_client: Any, app: APIFlask, make_key: KeyFactory, spec_file: Path
) -> None:
    spec = json.loads(spec_file.read_text())
    models = importlib.import_module("conveyor_client.models")
    for name in spec["components"]["schemas"]:
        assert hasattr(models, name), f"the generator dropped {name}"
    operations = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    api_dir = Path(python_client.__file__).parent / "api"
    generated = {path.stem for path in api_dir.rglob("*.py") if path.stem != "__init__"}
    snake = {"".join(f"_{c.lower()}" if c.isupper() else c for c in op) for op in operations}
    assert snake <= generated, snake - generated
    # and it talks to the app: submit, read, list
    client_module = importlib.import_module("conveyor_client")
    submit_job = importlib.import_module("conveyor_client.api.jobs.submit_job")
    get_job = importlib.import_module("conveyor_client.api.jobs.get_job")
    list_jobs = importlib.import_module("conveyor_client.api.jobs.list_jobs")
    client = client_module.AuthenticatedClient(
        base_url="http://conveyor.test", token=make_key(), httpx_args={"transport": httpx.WSGITransport(app=app)}
    )
    body = models.JobCreate.from_dict({"type": "echo", "payload": {"message": "from a generated client"}})
    submitted = submit_job.sync_detailed(client=client, body=body)
    assert submitted.status_code == 202, submitted.content
    job = get_job.sync(job_id=str(submitted.parsed.id), client=client)
    assert isinstance(job, models.JobRead) and job.status.value == "queued"
    page = list_jobs.sync(client=client)
    assert [j.id for j in page.items] == [job.id]
    missing = get_job.sync_detailed(job_id="00000000-0000-4000-8000-000000000000", client=client)
    assert missing.status_code == 404 and isinstance(missing.parsed, models.Problem)


TYPESCRIPT_USE = """
import type { components, operations, paths } from "./schema";

type JobRead = components["schemas"]["JobRead"];
type Submitted = paths["/v1/jobs"]["post"]["responses"][202]["content"]["application/json"];
type Problem = operations["getJob"]["responses"][404]["content"]["application/problem+json"];
type Groups = operations["listFailureGroups"]["responses"][200]["content"]["application/json"];

export function describe(job: JobRead, submitted: Submitted, problem: Problem, groups: Groups): string {
  const sample: JobRead = groups.items[0].sample;
  return `${job.id} ${job.status} ${submitted.read_token?.token ?? ""} ${problem.detail} ${sample.type}`;
}
"""


NO_NODE_TOOLS = not (NODE_TOOLS / "tsc").exists() and os.environ.get("CONVEYOR_REQUIRE_SERVICES") != "1"


@pytest.mark.skipif(NO_NODE_TOOLS, reason="no tests/clients/node_modules: `make test` installs openapi-typescript")
def test_the_typescript_types_compile_strictly(spec_file: Path, tmp_path: Path) -> None:
    output = run(str(NODE_TOOLS / "openapi-typescript"), str(spec_file), "-o", "schema.d.ts", cwd=tmp_path)
    assert "warn" not in output.lower() and "error" not in output.lower(), output
    (tmp_path / "use.ts").write_text(TYPESCRIPT_USE)
    run(str(NODE_TOOLS / "tsc"), "--noEmit", "--strict", "--skipLibCheck", "false", "use.ts", "schema.d.ts",
        cwd=tmp_path)  # fmt: skip
