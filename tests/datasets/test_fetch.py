"""A dataset fetched from a URL (POST /v1/datasets:fetch), on each backend: a real HTTP server on loopback, allowed by
CONVEYOR_INGEST_URL_ALLOW; the SSRF guard at submit and again in the worker; redirects, errors and size limits."""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select

from api import create_app
from core.models import Dataset, Job
from core.queue import RecordingPublisher
from core.registry import Registry
from core.settings import Settings
from tests.datasets.conftest import rows_of
from tests.support.keys import admin_client
from tests.support.worker import RunJob, job_runner

CSV = "id,carrier,delay\n" + "".join(f"{i},{'AA' if i % 2 else 'UA'},{'NA' if i % 10 == 0 else i / 4}\n"
                                     for i in range(1, 1_001))  # fmt: skip


class Origin:
    """An HTTP server on 127.0.0.1 serving `routes` (path → status, headers, body) and recording each request."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requested: list[str] = []
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                origin.requested.append(self.path)
                status, headers, body = origin.routes.get(self.path, (404, {}, b"not here"))
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin()
    server.routes["/data/flights.csv.gz"] = (200, {"Content-Type": "application/gzip"}, gzip.compress(CSV.encode()))
    server.routes["/data/flights.csv"] = (200, {"Content-Type": "text/csv"}, CSV.encode())
    server.routes["/moved.csv"] = (302, {"Location": "/data/flights.csv"}, b"")
    server.routes["/busy.csv"] = (503, {}, b"try later")
    server.routes["/big.csv"] = (200, {}, b"n\n" + b"1234567\n" * 10_000)
    yield server
    server.close()


@pytest.fixture
def settings(clean_db: Engine, database_url: str, tmp_path: Path) -> Settings:
    """Loopback allowed, as a deployment that fetches from a server beside it would set it; uploads up to 64 KB."""
    return Settings(data_dir=tmp_path, database_url=database_url, lease_seconds=30, ingest_url_allow=["127.0.0.1"],
                    max_upload_bytes=64_000)  # fmt: skip


def count(engine: Engine, model: type[Dataset] | type[Job]) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar_one())


def fetch(client: FlaskClient, run_job: RunJob, **body: Any) -> dict[str, Any]:
    answer = client.post("/v1/datasets:fetch", json=body)
    assert answer.status_code == 202, answer.json
    assert answer.json["file_id"] is None and answer.json["job"]["payload"]["url"] == body["url"]
    job = run_job(answer.json["job"]["id"])
    return {"job": job, "dataset": client.get(f"/v1/datasets/{answer.json['dataset']['id']}").json}


def test_a_dataset_fetched_from_a_url_is_loaded_as_an_upload_would_be(
    client: FlaskClient, run_job: RunJob, origin: Origin, clean_db: Engine
) -> None:
    url = f"{origin.base}/data/flights.csv.gz"
    done = fetch(client, run_job, url=url)
    dataset = done["dataset"]
    assert done["job"].status == "succeeded", done["job"].error
    assert dataset["name"] == "flights.csv.gz" and dataset["row_count"] == 1_000 and dataset["reject_count"] == 0
    types = {c["name"]: c["type"] for c in dataset["columns"]}
    assert types == {"id": "integer", "carrier": "string", "delay": "float"}
    assert sum(1 for r in rows_of(clean_db, dataset["id"]) if r["delay"] is None) == 100
    source = dataset["source"]
    assert source["url"] == url and source["format"] == "csv" and source["filename"] == "flights.csv.gz"
    kept = client.get(f"/v1/files/{source['file_id']}")  # the fetched file is kept as an upload is
    assert kept.status_code == 200 and hashlib.sha256(kept.data).hexdigest() == source["sha256"]
    assert origin.requested == ["/data/flights.csv.gz"]

    more = fetch(client, run_job, url=f"{origin.base}/data/flights.csv", dataset_id=dataset["id"])
    assert more["dataset"]["row_count"] == 2_000 and more["dataset"]["version"] == 2
    assert [v["mode"] for v in more["dataset"]["versions"]] == ["replace", "append"]


def test_a_redirect_is_not_followed(client: FlaskClient, run_job: RunJob, origin: Origin) -> None:
    done = fetch(client, run_job, url=f"{origin.base}/moved.csv")
    assert done["job"].status == "failed" and done["job"].attempt == 1  # not retried: it would redirect again
    assert done["job"].error["type"] == "SourceRefused" and "follows no redirects" in done["job"].error["message"]
    assert origin.requested == ["/moved.csv"]  # the Location was never fetched
    assert done["dataset"]["status"] == "failed" and done["dataset"]["error"]["type"] == "SourceRefused"


def test_a_missing_file_fails_and_a_busy_server_is_retried(
    client: FlaskClient, run_job: RunJob, origin: Origin
) -> None:
    missing = fetch(client, run_job, url=f"{origin.base}/nothing.csv")
    assert missing["job"].status == "failed" and missing["job"].error["type"] == "SourceRefused"
    assert "404" in missing["job"].error["message"]
    busy = fetch(client, run_job, url=f"{origin.base}/busy.csv")
    assert busy["job"].status == "retrying" and busy["job"].error["type"] == "SourceUnavailable"
    assert "503" in busy["job"].error["message"]


def test_a_file_past_the_upload_limit_is_refused_and_leaves_nothing(
    client: FlaskClient, run_job: RunJob, origin: Origin, settings: Settings
) -> None:
    done = fetch(client, run_job, url=f"{origin.base}/big.csv")
    assert done["job"].status == "failed" and done["job"].error["type"] == "UploadTooLarge"
    files = settings.data_dir / "files"
    assert not files.exists() or list(files.iterdir()) == []


@pytest.mark.parametrize(
    ("body", "status", "problem"),
    [
        ({}, 422, "validation-error"),
        ({"url": "ftp://127.0.0.1/x.csv"}, 422, "url-refused"),
        ({"url": "file:///etc/passwd"}, 422, "url-refused"),
        ({"url": "http://user:secret@127.0.0.1/x.csv"}, 422, "url-refused"),
        ({"url": "https://93.184.215.14/x.csv", "mode": "append"}, 422, "validation-error"),
        ({"url": "https://93.184.215.14/x.csv", "format": "xls"}, 422, "validation-error"),
        ({"url": "https://93.184.215.14/x.csv", "options": {"delimiter": ";;"}}, 422, "validation-error"),
        ({"url": "https://93.184.215.14/x.csv", "schema": {"a": "money"}}, 422, "schema-invalid"),
        ({"url": "https://93.184.215.14/x.csv", "dataset_id": "6d1c2b9e-0000-4000-8000-000000000000"}, 404,
         "not-found"),
        ({"url": "https://93.184.215.14/x.csv", "surprise": 1}, 422, "validation-error"),
    ],
)  # fmt: skip
def test_bad_requests_are_refused_and_create_nothing(
    client: FlaskClient, clean_db: Engine, body: dict[str, Any], status: int, problem: str
) -> None:
    answer = client.post("/v1/datasets:fetch", json=body)
    assert answer.status_code == status and answer.json["type"] == f"urn:conveyor:problem:{problem}", answer.json
    assert count(clean_db, Dataset) == 0 and count(clean_db, Job) == 0


@pytest.fixture
def unallowed(
    clean_db: Engine, database_url: str, tmp_path: Path, registry: Registry
) -> Iterator[tuple[FlaskClient, RunJob]]:
    """An API and a worker with the default settings: nothing but public addresses may be fetched."""
    settings = Settings(data_dir=tmp_path, database_url=database_url, lease_seconds=30)
    app = create_app(settings, publisher=RecordingPublisher())
    with job_runner(settings, registry) as run:
        yield admin_client(app), run
    app.extensions["conveyor"].engine.dispose()


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "[::1]", "169.254.169.254", "2130706433"])
def test_private_addresses_are_refused_unless_allowed(
    unallowed: tuple[FlaskClient, Callable[..., Any]], clean_db: Engine, origin: Origin, host: str
) -> None:
    client, _run = unallowed
    port = origin.base.rsplit(":", 1)[1]
    answer = client.post("/v1/datasets:fetch", json={"url": f"http://{host}:{port}/data/flights.csv"})
    assert answer.status_code == 422 and answer.json["type"] == "urn:conveyor:problem:url-refused"
    assert "not a public address" in answer.json["detail"]
    assert count(clean_db, Dataset) == 0 and count(clean_db, Job) == 0 and origin.requested == []


def test_the_worker_checks_the_url_again(
    unallowed: tuple[FlaskClient, RunJob], clean_db: Engine, origin: Origin
) -> None:
    """A job submitted directly names a loopback URL: the submit checks its form only; the worker, which resolves
    it, refuses it before connecting."""
    client, run = unallowed
    dataset = client.post("/v1/datasets?name=d", data="a\n1\n", content_type="text/csv").json["dataset"]["id"]
    payload = {"dataset_id": dataset, "url": f"{origin.base}/data/flights.csv", "mode": "append"}
    submitted = client.post("/v1/jobs", json={"type": "dataset_ingest", "payload": payload})
    assert submitted.status_code == 202, submitted.json
    job = run(submitted.json["id"])
    assert job.status == "failed" and job.error["type"] == "UrlRefused" and origin.requested == []
    both = client.post("/v1/jobs", json={"type": "dataset_ingest", "payload": {**payload, "file_id": dataset}})
    assert both.status_code == 422  # a file and a URL: one or the other
