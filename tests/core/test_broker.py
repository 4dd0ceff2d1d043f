"""The broker side on every broker Conveyor runs on: publishing, its connections, and the reconciler's view of
how many messages wait in a queue."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu.transport import pyamqp as kombu_pyamqp
from kombu.transport import redis as kombu_redis

from core.broker_connection import RedisChannel, RedisTransport
from core.queue import REQUEST_ID_HEADER, CeleryPublisher, Wakeup, broker_reachable, make_celery, messages
from core.settings import Settings
from tests.support.backends import broker_redis, services_or_skip

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


PUBLISHERS = [
    pytest.param((broker, lean), id=f"{broker}-{'lean' if lean else 'plain'}")
    for lean in (True, False)
    for broker in ("embedded-redis", "redis", "rabbitmq")
]


@pytest.fixture(params=PUBLISHERS)
def publisher(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CeleryPublisher]:
    """A publisher on each broker, lean (CONVEYOR_CELERY_LEAN, the default) and plain (Celery's send_task and
    kombu's own transports)."""
    broker, lean = request.param
    with ExitStack() as stack:
        if broker in ("embedded-redis", "redis"):
            url = broker_redis("embedded" if broker == "embedded-redis" else "services", tmp_path, stack)
        else:
            app = make_celery(Settings(broker_url=RABBITMQ_URL), producer=True)
            services_or_skip("RabbitMQ", broker_reachable(app, timeout=2))
            url = RABBITMQ_URL
        settings = Settings(broker_url=url, celery_lean=lean)
        yield CeleryPublisher(make_celery(settings, producer=True), lean=lean)


def test_queue_depth_counts_waiting_messages_of_every_priority(publisher: CeleryPublisher) -> None:
    queue = f"depth-{uuid.uuid4().hex[:8]}"
    assert publisher.queue_depth(queue) == 0  # never declared: nothing waits
    wakeups = [Wakeup(uuid.uuid4(), "echo", queue, priority) for priority in (0, 5, 9, 9)]
    with publisher.app.connection_for_write() as connection:
        try:
            assert publisher.publish(messages(wakeups)) == []
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
        assert publisher.publish(messages(wakeups)) == []
        for queue in queues:
            assert depth_settles(publisher, queue, 40)
    finally:
        with publisher.app.connection_for_write() as connection:
            for queue in queues:
                connection.default_channel.queue_delete(queue)


def test_a_wakeup_is_the_message_celerys_send_task_would_send(publisher: CeleryPublisher) -> None:
    """The publisher builds Celery's message itself (without send_task's per-call routing and declaring): what a
    worker receives must not differ but in the task id, for a lone job and for a message shared by a batch's jobs."""
    ours, theirs = (f"lean-{uuid.uuid4().hex[:8]}" for _ in range(2))
    job_ids = [uuid.uuid4(), uuid.uuid4()]
    args = [str(job_id) for job_id in job_ids]
    try:
        assert publisher.publish(messages([Wakeup(job_ids[0], "echo", ours, 7, request_id="req-1")])) == []
        shared = [Wakeup(job_id, "echo", ours, 7, jobs_per_message=2, time_limit=30.0, request_id="req-2")
                  for job_id in job_ids]  # fmt: skip
        assert publisher.publish(messages(shared)) == []
        priority = publisher.broker_priority(7)
        publisher.app.send_task("jobs.echo", args=args[:1], queue=theirs, priority=priority,
                                headers={REQUEST_ID_HEADER: "req-1"})  # fmt: skip
        publisher.app.send_task("jobs.echo", args=args, queue=theirs, priority=priority, time_limit=60.0,
                                headers={REQUEST_ID_HEADER: "req-2"})  # fmt: skip
        received = [received_messages(publisher, queue, 2) for queue in (ours, theirs)]
    finally:
        with publisher.app.connection_for_write() as connection:
            for queue in (ours, theirs):
                connection.default_channel.queue_delete(queue)
    for lean, reference in zip(*received, strict=True):
        assert lean == reference
    assert [message["body"][0] for message in received[0]] == [args[:1], args]
    assert [message["headers"]["timelimit"] for message in received[0]] == [[None, None], [60.0, None]]
    assert [message["headers"][REQUEST_ID_HEADER] for message in received[0]] == ["req-1", "req-2"]


def received_messages(publisher: CeleryPublisher, queue: str, count: int) -> list[dict[str, Any]]:
    """What a consumer of the queue gets, the ids that differ from one message to the next left out."""
    messages = []
    declared = publisher.app.amqp.queues[queue]  # as the publisher declared it: x-max-priority on AMQP
    with publisher.app.connection_for_read() as connection, connection.SimpleQueue(declared) as simple:
        for _ in range(count):
            message = simple.get(timeout=5)
            message.ack()
            headers = {k: v for k, v in message.headers.items() if k not in {"id", "root_id"}}
            # reply_to is where a result backend would answer (Conveyor runs without one); AMQP repeats the headers
            properties = {k: v for k, v in message.properties.items() if k not in {"correlation_id", "delivery_tag",
                          "delivery_info", "body_encoding", "reply_to", "application_headers"}}  # fmt: skip
            assert message.delivery_info["routing_key"] == queue
            messages.append({"body": message.decode(), "headers": headers, "properties": properties,
                             "content_type": message.content_type})  # fmt: skip
    return messages


def test_redis_commands_reuse_one_client_per_connection_pool(
    publisher: CeleryPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kombu built a redis-py client per publish, ack and event (a third of a lone publish's CPU)."""
    if not publisher.redis or publisher.send != publisher.send_lean:
        pytest.skip("AMQP has no redis-py clients; kombu's own transport builds one per command")
    queue = f"reuse-{uuid.uuid4().hex[:8]}"
    # the pool's producer and its client:
    assert publisher.publish(messages([Wakeup(uuid.uuid4(), "echo", queue, 5)])) == []
    made = count_redis_clients(monkeypatch)
    try:
        for _ in range(30):  # lone publishes, each through the pool's producer
            assert publisher.publish(messages([Wakeup(uuid.uuid4(), "echo", queue, 5)])) == []
        pipelined = messages([Wakeup(uuid.uuid4(), "echo", queue, p) for p in range(10)])
        assert publisher.publish(pipelined) == []
        assert made == [0]  # the first publish's client serves the next 31
        assert depth_settles(publisher, queue, 41)  # (each query on a connection and client of its own)
        with publisher.app.producer_or_acquire() as producer:
            made[0] = 0
            channel = producer.channel
            assert isinstance(channel, RedisChannel)
            channel._after_fork()  # what kombu runs in a forked child: a new connection pool
            producer.publish({"after": "fork"}, routing_key=queue)
            assert channel._kept_client.connection_pool is channel.pool  # the new pool's client, not the old one's
        assert made == [1]
        assert depth_settles(publisher, queue, 42)
    finally:
        with publisher.app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)


def test_only_kombus_plain_redis_transport_is_replaced(publisher: CeleryPublisher) -> None:
    """Lean, kombu's plain Redis transport is replaced; plain (CONVEYOR_CELERY_LEAN=false), none is."""
    lean = publisher.send == publisher.send_lean
    with publisher.app.connection_for_write() as connection, publisher.app.pool.acquire() as pooled:
        redis_transport = RedisTransport if lean else kombu_redis.Transport
        expected = redis_transport if publisher.redis else kombu_pyamqp.Transport
        assert connection.get_transport_cls() is expected
        assert pooled.get_transport_cls() is expected  # kombu's pools copy the connection


def test_a_connection_describes_itself_as_json(publisher: CeleryPublisher) -> None:
    """A worker's `stats` reply (Flower's worker page, `celery inspect stats`) carries its connection's info as JSON:
    the replaced transport must read as its name, and a clone keep the replacement."""
    with publisher.app.connection_for_write() as connection:
        info = json.loads(json.dumps(connection.info()))
        assert info["transport"] == ("redis" if publisher.redis else "amqp")
        assert connection.clone().get_transport_cls() is connection.get_transport_cls()


def test_a_channel_closed_after_its_connection_raises_a_connection_error(publisher: CeleryPublisher) -> None:
    """A worker that lost its broker closes its consumer's channel after kombu detached the transport: restoring the
    unacked messages then needed a new pool and raised AttributeError, which killed the worker (celery/kombu#582);
    a connection error is what Celery ignores while it reconnects."""
    if not publisher.redis or publisher.send != publisher.send_lean:
        pytest.skip("Conveyor's Redis channel only (AMQP, and kombu's own transport, are kombu's)")
    connection = publisher.app.connection_for_write()
    channel = connection.default_channel
    assert isinstance(channel, RedisChannel)
    channel._pool = None  # as a disconnect leaves it
    connection._do_close_transport()  # as kombu's close does before the channel's
    with pytest.raises(redis.exceptions.ConnectionError), channel.conn_or_acquire():
        pass
    assert redis.exceptions.ConnectionError in connection.connection_errors  # what Celery's ignore_errors ignores
    connection.maybe_close_channel(channel)  # kombu's own close of it raises nothing


def count_redis_clients(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    made = [0]
    original = redis.Redis.__init__

    def counting(self: redis.Redis, *args: Any, **kwargs: Any) -> None:
        made[0] += 1
        original(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counting)
    return made
