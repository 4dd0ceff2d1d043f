"""End-to-end backends: embedded (SQLite + a private Redis on a unix socket, as `conveyor up` runs), services
(PostgreSQL + Redis of this machine, in a database and Redis DB number of this run's own) and rabbitmq (PostgreSQL +
this machine's RabbitMQ, in a virtual host of this run's own)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.e2e.harness import Cluster
from tests.support.backends import broker_redis, postgres_database, rabbitmq_vhost

pytestmark = pytest.mark.e2e


def backend_urls(kind: str, directory: Path, stack: ExitStack) -> tuple[str, str]:
    if kind == "embedded":
        return f"sqlite:///{directory / 'conveyor.db'}", broker_redis(kind, directory, stack)
    if kind == "rabbitmq":
        return stack.enter_context(postgres_database()), stack.enter_context(rabbitmq_vhost())
    return stack.enter_context(postgres_database()), broker_redis(kind, directory, stack)


@contextmanager
def running_cluster(kind: str, directory: Path, **settings: str) -> Iterator[Cluster]:
    """A deployment on backend `kind` (embedded or services) with CONVEYOR_* `settings`, up and consuming."""
    with ExitStack() as stack:
        database_url, broker_url = backend_urls(kind, directory, stack)
        cluster = Cluster(directory, database_url, broker_url, **settings)
        stack.callback(cluster.close)
        cluster.start()
        cluster.wait_ready()
        cluster.wait_workers()
        yield cluster


@pytest.fixture(scope="module", params=["embedded", "services"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One running deployment per backend, shared by a module's scenarios."""
    with running_cluster(request.param, tmp_path_factory.mktemp(f"e2e-{request.param}")) as cluster:
        yield cluster
