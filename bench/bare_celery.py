"""The baseline: a bare Celery app on the same broker (no database, no result backend), one no-op task whose
only effect is a counter in Redis so the benchmark can see completion."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

from core.queue import celery_config
from core.settings import Settings

COUNTER_KEY = "bench:done"
LATENCY_KEY = "bench:latency"


def make_bare_app(broker_url: str, counter_url: str) -> tuple[Celery, redis.Redis]:
    app = Celery("bare", set_as_current=False)
    app.config_from_object(
        celery_config(Settings(broker_url=broker_url))
    )  # same transport options, acks_late, prefetch
    counter = redis.Redis.from_url(counter_url)

    @app.task(name="bench.noop", ignore_result=True)
    def noop(n: int) -> None:
        counter.incr(COUNTER_KEY)

    @app.task(name="bench.stamp", ignore_result=True)
    def stamp(sent_at: float) -> None:
        counter.rpush(LATENCY_KEY, time.time() - sent_at)  # submit→start, on the same machine's clock

    return app, counter


if "BENCH_BROKER_URL" in os.environ:  # `celery -A bench.bare_celery worker` (the benchmark sets both variables)
    app, _ = make_bare_app(os.environ["BENCH_BROKER_URL"], os.environ["BENCH_COUNTER_URL"])
