"""Broker connections for Conveyor's Celery apps: kombu's, with one redis-py client kept per Redis channel.

kombu's Redis channel builds a new `redis.Redis` client for every command it sends outside its consumer loop:
each publish, each ack, each task event. Building one fills its response-callback table (about 170 entries), which
cost about a third of a lone publish (0.3 of 0.9 ms) and a fifth of a worker's main process in profiles. A client
holds no per-command state (commands take a connection from the channel's pool and give it back), so one per pool
serves them all. The channel's pool is replaced after a fork or a disconnect, and its client with it.
"""

from __future__ import annotations

from typing import Any

import kombu.connection
import redis
from celery.app.amqp import AMQP
from kombu.transport import redis as kombu_redis


class RedisChannel(kombu_redis.Channel):
    _kept_client: Any = None

    def _get_pool(self, asynchronous: bool = False) -> Any:
        # A worker whose broker went away closes its consumer connection, and closing the channel restores the
        # unacked messages through a new pool; when kombu has already detached the transport from its connection,
        # building that pool raised AttributeError (celery/kombu#582), which Celery's `ignore_errors` does not
        # catch, and the worker exited ("Unrecoverable error", tests/faults/test_workflow_faults.py). As a
        # connection error it is ignored and the worker reconnects; the unacked messages come back by the
        # visibility timeout, and the ledger's reconciler covers the rest.
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection is closed")
        return super()._get_pool(asynchronous)

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer loop's own client (BRPOP, pub/sub), already made once per channel
            return super()._create_client(asynchronous=True)
        pool = self.pool
        client = self._kept_client
        if client is None or client.connection_pool is not pool:
            client = self._kept_client = super()._create_client()
        return client


class RedisTransport(kombu_redis.Transport):
    Channel = RedisChannel


def with_kept_client(connection: kombu.connection.Connection) -> Any:
    """The connection, on `RedisTransport` where kombu would use its plain Redis transport (`redis://`, `rediss://`
    and `redis+socket://` URLs alike); other transports stay kombu's."""
    if connection.get_transport_cls() is kombu_redis.Transport:
        connection.transport_cls = RedisTransport
    return connection


class Connection(kombu.connection.Connection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        with_kept_client(self)

    def Pool(self, limit: int | None = None, **kwargs: Any) -> ConnectionPool:
        return ConnectionPool(self, limit, **kwargs)

    def _info(self, resolve: bool = True) -> Any:
        # The transport by its name, as kombu's own connections have it: a worker sends this in its `stats` reply
        # (Flower's worker page) as JSON, and a class does not encode. A clone made from it gets the class again.
        return tuple((key, "redis" if value is RedisTransport else value) for key, value in super()._info(resolve))


class ConnectionPool(kombu.connection.ConnectionPool):
    """kombu's pool makes its connections from the original's settings, in which the transport is a name again."""

    def new(self) -> Any:
        return with_kept_client(super().new())


class ConveyorAMQP(AMQP):
    """Celery's AMQP component with the connection above (Celery's documented `amqp=` extension point)."""

    Connection = Connection
    BrokerConnection = Connection
