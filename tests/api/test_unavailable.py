"""A database that does not answer is a 503 with Retry-After and a problem body, never a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from api import create_app
from core.queue import RecordingPublisher
from core.settings import Settings
from tests.e2e.harness import free_port
from tests.support.keys import client_with

WELL_FORMED_KEY = "cvk_0123456789abcdef_" + "A" * 43


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    app = create_app(Settings(data_dir=tmp_path, database_url=dead), publisher=RecordingPublisher())
    return client_with(app, WELL_FORMED_KEY)  # its lookup is what meets the dead database


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/jobs", {"type": "echo", "payload": {"message": "x"}}),
        ("GET", "/v1/jobs", None),
        ("GET", "/v1/jobs/6f1c1f0e-9d8e-4b8a-8d7e-2f0f8a4b1c2d", None),
        ("GET", "/v1/queues", None),
    ],
)
def test_database_down_is_503_problem(client: FlaskClient, method: str, path: str, body: object) -> None:
    response = client.open(path, method=method, json=body)
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    assert response.json["type"] == "urn:conveyor:problem:unavailable"
    assert "127.0.0.1" not in response.get_data(as_text=True)


def test_readyz_names_the_missing_dependency(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503 and "database" in response.json["detail"]


def test_readyz_is_503_while_the_database_is_behind_this_codes_migrations(tmp_path: Path) -> None:
    """A rolling deploy's new API before `conveyor db upgrade`: not ready, and says what to run."""
    from api import create_app
    from core.migrate import upgrade_database
    from core.queue import RecordingPublisher
    from core.settings import Settings

    url = f"sqlite:///{tmp_path / 'behind.db'}"
    upgrade_database(url, "0009")
    app = create_app(Settings(data_dir=tmp_path, database_url=url), publisher=RecordingPublisher())
    response = app.test_client().get("/readyz")
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.json["checks"] == {"database": "ok", "migrations": "behind: run `conveyor db upgrade`",
                                       "broker": "ok"}  # fmt: skip
    upgrade_database(url)
    assert app.test_client().get("/readyz").status_code == 200
    app.extensions["conveyor"].engine.dispose()
