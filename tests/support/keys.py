"""API keys for tests, made the way `conveyor keys create` makes them (core.keys, the app's server secret)."""

from __future__ import annotations

from collections.abc import Iterable

from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from core.db import make_sessionmaker
from core.keys import create_key
from core.server_secret import server_secret
from core.settings import Settings


def issue_key(engine: Engine, settings: Settings, *, tenant: str = "default", scopes: Iterable[str] = ("admin",),
              **fields: object) -> str:  # fmt: skip
    with make_sessionmaker(engine)() as session:
        _key, token = create_key(session, server_secret=server_secret(settings), tenant_id=tenant, scopes=scopes,
                                 created_by="test", **fields)  # type: ignore[arg-type]  # fmt: skip
        session.commit()
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def app_key(app: APIFlask, tenant: str = "default", scopes: Iterable[str] = ("admin",)) -> str:
    ext = app.extensions["conveyor"]
    return issue_key(ext.engine, ext.settings, tenant=tenant, scopes=scopes)


def client_with(app: APIFlask, token: str | None) -> FlaskClient:
    """A test client of `app` that sends `token` (none: no Authorization header)."""
    client = app.test_client()
    if token is not None:
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def admin_client(app: APIFlask, tenant: str = "default") -> FlaskClient:
    """A test client of `app` acting as an admin of `tenant`."""
    return client_with(app, app_key(app, tenant))
