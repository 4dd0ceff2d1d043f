"""Datasets on each backend: files written by the tests, ingests run by the real executor in this process."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, inspect, select
from sqlalchemy.orm import Session

from api import create_app
from core.db import make_sessionmaker
from core.models import Dataset, Job
from core.queue import RecordingPublisher
from core.registry import Registry
from core.settings import Settings
from tests.support.keys import admin_client
from tests.support.worker import RunJob, job_runner


@pytest.fixture
def settings(clean_db: Engine, database_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url, lease_seconds=30)


@pytest.fixture
def run_job(settings: Settings, registry: Registry) -> Iterator[RunJob]:
    """Run a submitted job to its end through the worker's executor (no broker: the test delivers it)."""
    with job_runner(settings, registry) as run:
        yield run


@pytest.fixture
def tables(clean_db: Engine) -> Callable[[], set[str]]:
    """The dataset tables that exist now (clean_db drops them all after the test)."""
    return lambda: {t for t in inspect(clean_db).get_table_names() if t.startswith("ds_")}


def dataset_of(engine: Engine, dataset_id: uuid.UUID | str) -> Dataset:
    with make_sessionmaker(engine)() as session:
        return session.get_one(Dataset, uuid.UUID(str(dataset_id)))


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def rows_of(engine: Engine, dataset_id: uuid.UUID | str, **kwargs: Any) -> list[dict[str, Any]]:
    from core.datasets.store import read_rows

    with Session(engine) as session:
        dataset = session.get_one(Dataset, uuid.UUID(str(dataset_id)))
        return read_rows(session, dataset, limit=kwargs.pop("limit", 1000), offset=0, filters=[], sort=[])


def jobs_of_type(engine: Engine, type: str) -> list[Job]:
    with Session(engine) as session:
        return list(session.scalars(select(Job).where(Job.type == type)))


@pytest.fixture
def client(settings: Settings) -> Iterator[FlaskClient]:
    app = create_app(settings, publisher=RecordingPublisher())
    yield admin_client(app)
    app.extensions["conveyor"].engine.dispose()


@pytest.fixture
def upload(client: FlaskClient, run_job: Callable[[uuid.UUID | str], Job]) -> Callable[..., dict[str, Any]]:
    """POST a file as a dataset (raw body), run its ingest, and return {dataset, job} as the API shows them after."""

    def send(body: bytes | str, content_type: str = "text/csv", path: str = "/v1/datasets", **params: Any) -> Any:
        query = "&".join(f"{k}={quote(v if isinstance(v, str) else json.dumps(v))}" for k, v in params.items())
        data = body.encode() if isinstance(body, str) else body
        response = client.post(f"{path}?{query}", data=data, content_type=content_type)
        assert response.status_code == 202, response.json
        job = run_job(response.json["job"]["id"])
        dataset = client.get(f"/v1/datasets/{response.json['dataset']['id']}").json
        result = client.get(f"/v1/jobs/{job.id}/result").json if job.status == "succeeded" else None
        return {"dataset": dataset, "job": job, "result": result and result["data"]}

    return send
