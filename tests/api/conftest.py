"""The API under the Flask test client, on each backend, with a recording publisher and an admin key."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from api import create_app
from core.queue import RecordingPublisher
from core.settings import Settings
from tests.support.keys import client_with, issue_key

KeyFactory = Callable[..., str]


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
def make_key(app: APIFlask) -> KeyFactory:
    """A key of `tenant` with `scopes`, valid for `app`."""
    ext = app.extensions["conveyor"]

    def make(tenant: str = "default", scopes: Iterable[str] = ("admin",), **fields: object) -> str:
        return issue_key(ext.engine, ext.settings, tenant=tenant, scopes=scopes, **fields)

    return make


@pytest.fixture
def client(app: APIFlask, make_key: KeyFactory) -> FlaskClient:
    """Acts as an admin of tenant `default`."""
    return client_with(app, make_key())


@pytest.fixture
def anonymous(app: APIFlask) -> FlaskClient:
    return client_with(app, None)
