"""The reconciler's view of the broker: how many messages wait in a queue, on every broker Conveyor runs on."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from core.queue import CeleryPublisher, Wakeup, broker_reachable, make_celery
from core.settings import Settings
from tests.support.backends import RedisServer, service_redis_db, services_or_skip

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture(params=["embedded-redis", "redis", "rabbitmq"])
def publisher(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CeleryPublisher]:
    with ExitStack() as stack:
        if request.param == "embedded-redis":
            server = RedisServer(tmp_path / "broker")
            server.start()
            stack.callback(server.stop)
            url = server.url
        elif request.param == "redis":
            url = stack.enter_context(service_redis_db())
        else:
            app = make_celery(Settings(broker_url=RABBITMQ_URL), producer=True)
            services_or_skip("RabbitMQ", broker_reachable(app, timeout=2))
            url = RABBITMQ_URL
        yield CeleryPublisher(make_celery(Settings(broker_url=url), producer=True))


def test_queue_depth_counts_waiting_messages_of_every_priority(publisher: CeleryPublisher) -> None:
    queue = f"depth-{uuid.uuid4().hex[:8]}"
    assert publisher.queue_depth(queue) == 0  # never declared: nothing waits
    wakeups = [Wakeup(uuid.uuid4(), "echo", queue, priority) for priority in (0, 5, 9, 9)]
    with publisher.app.connection_for_write() as connection:
        try:
            assert publisher.publish(wakeups) == []
            assert depth_settles(publisher, queue, 4)
            connection.default_channel.queue_purge(queue)  # what a broker restart without persistence leaves
            assert depth_settles(publisher, queue, 0)
        finally:
            connection.default_channel.queue_delete(queue)


def depth_settles(publisher: CeleryPublisher, queue: str, expected: int, timeout: float = 5) -> bool:
    """RabbitMQ counts a published message a moment later (no publisher confirms); Redis at once."""
    deadline = time.monotonic() + timeout
    while publisher.queue_depth(queue) != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_publish_of_many_messages_delivers_each_one_to_its_queue(publisher: CeleryPublisher) -> None:
    """A batch submit's messages go out pipelined on Redis (one by one on AMQP): every one arrives."""
    queues = [f"many-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    wakeups = [Wakeup(uuid.uuid4(), "echo", queue, i % 10) for queue in queues for i in range(40)]
    try:
        assert publisher.publish(wakeups) == []
        for queue in queues:
            assert depth_settles(publisher, queue, 40)
    finally:
        with publisher.app.connection_for_write() as connection:
            for queue in queues:
                connection.default_channel.queue_delete(queue)
