"""The broker side of the ledger: Celery configuration and publishing wake-up calls by task name after commit.

The only module in core that imports celery (with core.broker_connection, its kombu connection). A message carries
nothing but the job ids (the row is the truth) and, for the worker's log lines, the id of the API request that
submitted them.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from celery import Celery
from celery.utils import uuid as task_id
from celery.utils.nodenames import anon_nodename
from kombu.entity import Exchange, Queue

from core import tracing
from core.broker_connection import ConveyorAMQP
from core.queue_names import QueueNames
from core.settings import Settings

log = logging.getLogger(__name__)

PRIORITY_LEVELS = 10  # API priority 0..9, higher runs first
PERSISTENT = 2  # AMQP delivery mode: RabbitMQ writes the message to disk
PUBLISH_PIPELINE = 1000  # broker commands sent in one round trip (a 1,000-job batch of one message each)
REQUEST_ID_HEADER = "conveyor_request_id"  # a message header; Celery gives it to the task as request.<name>


@dataclass(frozen=True)
class Wakeup:
    """What a publish needs to know about a job: which task, which queue, which priority; and whether its message
    may wake other jobs of the same type, queue and priority too (a batch submit's)."""

    job_id: uuid.UUID
    type: str
    queue: str
    priority: int
    jobs_per_message: int = 1
    time_limit: float | None = None  # the job type's hard limit; a shared message gets the sum of its jobs'
    request_id: str | None = None  # the API request that submitted the job
    attempts: int = 0  # attempts before this message: Celery's `retries`, which Flower shows

    @property
    def task_name(self) -> str:
        return task_name(self.type)


@dataclass(frozen=True)
class Message:
    """One broker message: `jobs.<type>` with the ids of the jobs it wakes (one, or several of a batch)."""

    wakeups: tuple[Wakeup, ...]

    @property
    def first(self) -> Wakeup:
        return self.wakeups[0]

    @property
    def job_ids(self) -> list[uuid.UUID]:
        return [w.job_id for w in self.wakeups]

    @property
    def headers(self) -> dict[str, str]:
        """The request id of its jobs when they share one (concurrent POSTs may share a message; then each job's
        row still has its own, which the worker logs once it has claimed the job)."""
        request_ids = {w.request_id for w in self.wakeups}
        request_id = request_ids.pop() if len(request_ids) == 1 else None
        return {REQUEST_ID_HEADER: request_id} if request_id is not None else {}

    @property
    def retries(self) -> int:
        """A lone job's attempts so far (a retry's message is always its job's own)."""
        return self.first.attempts if len(self.wakeups) == 1 else 0

    @property
    def time_limit(self) -> float | None:
        """Celery's hard limit applies to a message: each job keeps its own allowance."""
        limits = [w.time_limit for w in self.wakeups]
        return None if None in limits else sum(limit for limit in limits if limit is not None)


def messages(wakeups: Sequence[Wakeup]) -> list[Message]:
    """Wake-ups grouped into messages: the same task, queue and priority share one, in submit order, up to each
    wake-up's `jobs_per_message`. Deterministic, so the rows can record their message's size before the publish."""
    open_messages: dict[tuple[str, str, int], list[Wakeup]] = {}
    grouped: list[list[Wakeup]] = []
    for wakeup in wakeups:
        if wakeup.jobs_per_message == 1:  # alone (a retry, a type with a soft time limit): nothing joins it
            grouped.append([wakeup])
            continue
        key = (wakeup.type, wakeup.queue, wakeup.priority)
        current = open_messages.get(key)
        if current is None or len(current) >= wakeup.jobs_per_message:
            current = open_messages[key] = []
            grouped.append(current)
        current.append(wakeup)
    return [Message(tuple(group)) for group in grouped]


def job_ids_of(batch: Sequence[Message]) -> list[uuid.UUID]:
    return [job_id for message in batch for job_id in message.job_ids]


def task_name(job_type: str) -> str:
    return f"jobs.{job_type}"


class Publisher(Protocol):
    def publish(self, batch: Sequence[Message]) -> list[uuid.UUID]:
        """Publish the messages; return the ids of the jobs whose message failed (their rows stay for the
        reconciler)."""
        ...


class RecordingPublisher:
    """An in-memory publisher for API tests: records what would have been sent; can be told to fail."""

    def __init__(self) -> None:
        self.sent: list[Wakeup] = []
        self.messages: list[Message] = []
        self.fail = False

    def publish(self, batch: Sequence[Message]) -> list[uuid.UUID]:
        if self.fail:
            return job_ids_of(batch)
        self.sent.extend(wakeup for message in batch for wakeup in message.wakeups)
        self.messages.extend(batch)
        return []

    def sent_ids(self) -> list[uuid.UUID]:
        return [wakeup.job_id for wakeup in self.sent]


class CeleryPublisher:
    """Publishes through a Celery app's pooled producer; never raises (a failed publish is the reconciler's).
    `lean` (CONVEYOR_CELERY_LEAN) builds Celery's message itself; otherwise each goes through `send_task`."""

    def __init__(self, app: Celery, *, lean: bool = True) -> None:
        self.app = app
        self.redis = app.conf.broker_url.split(":", 1)[0].startswith("redis")
        self.send = self.send_lean if lean else self.send_task

    def publish(self, batch: Sequence[Message]) -> list[uuid.UUID]:
        if not batch:
            return []
        try:
            # One pooled producer (one connection) for the whole list, instead of one acquire per message.
            with self.app.producer_or_acquire() as producer:
                if len(batch) == 1:  # alone, a message keeps kombu's publish retry
                    self.send(batch[0], producer)
                    return []
                # Several messages (a batch submit's, or a group's of several types): pipelined, one round trip
                # to Redis (AMQP publishes them one by one). A failed flush leaves their delivery uncertain: all
                # are handed to the reconciler, and a message that did arrive only wakes a job claimed once.
                with producer.batch(max_size=PUBLISH_PIPELINE):
                    for message in batch:
                        self.send(message, producer)
        except Exception:
            failed = job_ids_of(batch)
            log.warning("publish of %d jobs failed; the reconciler will publish them", len(failed), exc_info=True)
            return failed
        return []

    def send_task(self, message: Message, producer: Any) -> None:
        """The message through Celery's public `send_task`, on the same producer."""
        first = message.first
        self.app.send_task(
            first.task_name, args=[str(job_id) for job_id in message.job_ids], queue=first.queue,
            priority=self.broker_priority(first.priority), time_limit=self.shared_limit(message), producer=producer,
            headers=self.headers(message), retries=message.retries,
        )  # fmt: skip

    def send_lean(self, message: Message, producer: Any) -> None:
        """Celery's own protocol-2 message (`app.amqp.as_task_v2`, what `send_task` builds), published on the pooled
        producer directly. `send_task`'s routing, signals, repr of the arguments and binding of the queue to the
        channel on every call took a third of a lone publish's CPU (ADR 0008)."""
        first = message.first
        args = [str(job_id) for job_id in message.job_ids]
        shared_limit = self.shared_limit(message)
        # ignore_result None, as send_task sends it: the worker's task decides (it ignores results)
        headers, properties, body, _ = self.app.amqp.as_task_v2(
            task_id(), first.task_name, args, time_limit=shared_limit, argsrepr=repr(args), kwargsrepr="{}",
            origin=anon_nodename(), ignore_result=None, retries=message.retries,
        )  # fmt: skip
        headers.update(self.headers(message))
        queue = self.app.amqp.queues[first.queue]  # made on first use: task_create_missing_queues
        producer.publish(
            body,
            exchange="",
            routing_key=queue.name,
            serializer="json",
            headers=headers,
            priority=self.broker_priority(first.priority),
            delivery_mode=PERSISTENT,
            retry=self.app.conf.task_publish_retry,
            retry_policy=self.app.conf.task_publish_retry_policy,
            # Declared once per connection, as kombu's maybe_declare caches it (by hash, forgotten on reconnect):
            # asking maybe_declare on every publish copied the queue and its exchange to bind them first.
            declare=[] if hash(queue) in producer.connection.declared_entities else [queue],
            **properties,
        )

    @staticmethod
    def headers(message: Message) -> dict[str, str]:
        """Conveyor's headers: the jobs' request id, and the trace context when tracing is on (core/tracing.py)."""
        headers = message.headers
        tracing.inject(headers)
        return headers

    @staticmethod
    def shared_limit(message: Message) -> float | None:
        """A shared message's hard limit (the sum of its jobs'); a lone job's is its task's own."""
        return message.time_limit if len(message.wakeups) > 1 else None

    def queue_depth(self, queue: str) -> int:
        """Messages waiting in a queue, all priority levels (not those a worker holds unacknowledged). Raises when
        the broker cannot be reached."""
        with self.app.connection_for_write() as connection:
            try:
                return int(connection.default_channel.queue_declare(queue=queue, passive=True).message_count)
            except connection.channel_errors:  # the queue does not exist (yet): nothing waits in it
                return 0

    def broker_priority(self, priority: int) -> int:
        # kombu's Redis transport serves priority 0 first; AMQP serves the highest number first.
        return PRIORITY_LEVELS - 1 - priority if self.redis else priority


def celery_config(settings: Settings, *, producer: bool = False) -> dict[str, Any]:
    """The Celery settings baseline of docs/design.md §4, shared by the API's producer and the worker.

    A producer (the API) gets tight broker timeouts and one publish retry: a broker that accepts connections but
    never answers (a network blackhole) must cost a request a few seconds, not minutes; the job is committed and
    the reconciler publishes it later. Workers keep longer socket timeouts for their acks and publishes."""
    transport: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout,
        "socket_connect_timeout": settings.publish_timeout,
        "socket_timeout": settings.publish_timeout if producer else max(10.0, settings.publish_timeout),
        "socket_keepalive": True,
        "retry_on_timeout": not producer,
        "priority_steps": list(range(PRIORITY_LEVELS)),
        "queue_order_strategy": "priority",
        "max_retries": 1 if producer else 2,
    }
    publish_retry = {
        "max_retries": 1 if producer else 2,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    }
    return {
        "broker_url": settings.resolved_broker_url,
        "broker_connection_timeout": settings.publish_timeout,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": transport,
        "broker_heartbeat": 30,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": settings.worker_prefetch_multiplier,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_send_task_events": True,
        "task_send_sent_event": False,  # one more broker write per job; Flower learns of tasks from -E events
        "task_default_queue": QueueNames.DEFAULT,
        # Every queue Conveyor knows, declared (Flower lists them while it knows no worker), each with
        # RabbitMQ's x-max-priority: without it AMQP ignores a message's priority. Redis ignores the argument and
        # keeps a list per priority_steps level instead. Queue objects, not a dict: Flower reads `.name` off each
        # while it knows no worker (a dict made its queue lengths answer 500 until a worker showed up).
        "task_queues": [
            Queue(name, Exchange(name), routing_key=name)  # type: ignore[no-untyped-call]
            for name in dict.fromkeys([*settings.queues, QueueNames.MAINTENANCE])
        ],
        "task_queue_max_priority": PRIORITY_LEVELS - 1,
        "task_create_missing_queues": True,
        "task_publish_retry": True,
        "task_publish_retry_policy": publish_retry,
        "enable_utc": True,
        "timezone": "UTC",
        "worker_hijack_root_logger": False,
    }


def make_celery(settings: Settings, name: str = "conveyor", *, producer: bool = False) -> Celery:
    """A Celery app configured with the baseline; the worker adds its tasks, the API (producer=True) only publishes."""
    app = Celery(name, set_as_current=False, amqp=ConveyorAMQP if settings.celery_lean else None)
    app.config_from_object(celery_config(settings, producer=producer))
    return app


def broker_reachable(app: Celery, timeout: float) -> bool:
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout)  # one try, no sleeping between tries
        return True
    except Exception:
        return False
