"""Per-key rate limits, counted in a real Redis (the embedded default's private one on a unix socket, and the
services' Redis): 429 with Retry-After and RateLimit-* headers and a problem body, per key, allowed again later."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import Engine

from api import create_app
from api.rate_limits import storage_uri
from core.queue import RecordingPublisher
from core.settings import Settings
from tests.e2e.harness import free_port
from tests.support.backends import broker_redis
from tests.support.keys import app_key, client_with


@pytest.fixture(params=["embedded", "services"])
def broker_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with ExitStack() as stack:
        yield broker_redis(request.param, tmp_path, stack)


def test_a_key_over_its_limit_gets_429_then_is_allowed_again(
    clean_db: Engine, database_url: str, tmp_path: Path, broker_url: str
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url, broker_url=broker_url,
                        rate_limit="3 per 2 seconds")  # fmt: skip
    assert storage_uri(settings).startswith(("redis://", "redis+unix://"))
    app = create_app(settings, publisher=RecordingPublisher())
    first, second = client_with(app, app_key(app)), client_with(app, app_key(app))
    assert [first.get("/v1/jobs").status_code for _ in range(3)] == [200] * 3
    refused = first.post("/v1/jobs", json={"type": "echo", "payload": {"message": "x"}})
    assert refused.status_code == 429 and refused.mimetype == "application/problem+json"
    assert refused.json["type"] == "urn:conveyor:problem:too-many-requests" and "Retry-After" in refused.json["detail"]
    assert "3 per 2 second" in refused.json["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 4 and refused.headers["RateLimit-Reset"] == refused.headers[
        "Retry-After"]  # fmt: skip
    assert (refused.headers["RateLimit-Limit"], refused.headers["RateLimit-Remaining"]) == ("3", "0")
    listed = second.get("/v1/jobs")  # limits are per key: another key of the tenant is not refused
    assert listed.status_code == 200 and listed.json["items"] == []  # and the refused submit made nothing
    assert app.test_client().get("/readyz").status_code == 200  # open routes are not counted
    time.sleep(4.2)  # two windows later the key's count has decayed
    assert first.get("/v1/jobs").status_code == 200
    app.extensions["conveyor"].engine.dispose()


def test_a_rate_limit_storage_that_is_down_limits_nothing(clean_db: Engine, database_url: str, tmp_path: Path) -> None:
    """Redis unreachable: requests go on, unlimited, rather than fail."""
    settings = Settings(data_dir=tmp_path, database_url=database_url, rate_limit="1 per minute",
                        rate_limit_storage_url=f"redis://127.0.0.1:{free_port()}/0")  # fmt: skip
    app = create_app(settings, publisher=RecordingPublisher())
    client = client_with(app, app_key(app))
    assert [client.get("/v1/jobs").status_code for _ in range(3)] == [200] * 3
    app.extensions["conveyor"].engine.dispose()


def test_storage_follows_the_broker() -> None:
    assert storage_uri(Settings(data_dir=Path("/d"))) == "redis+unix:///d/redis.sock"
    assert storage_uri(Settings(broker_url="redis://r:6379/0")) == "redis://r:6379/0"
    assert storage_uri(Settings(broker_url="amqp://guest@rabbit//")) == "memory://"
    assert storage_uri(Settings(broker_url="amqp://x//", rate_limit_storage_url="redis://r/3")) == "redis://r/3"
