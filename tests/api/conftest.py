"""The API under the Flask test client, on each backend, with a recording publisher."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from api import create_app
from core.queue import RecordingPublisher
from core.settings import Settings


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def app(clean_db: Engine, database_url: str, tmp_path: Path, publisher: RecordingPublisher) -> Iterator[APIFlask]:
    settings = Settings(data_dir=tmp_path, database_url=database_url, max_request_bytes=64 * 1024)
    app = create_app(settings, publisher=publisher)
    yield app
    app.extensions["conveyor"].engine.dispose()


@pytest.fixture
def client(app: APIFlask) -> FlaskClient:
    return app.test_client()
