"""The fan-in baseline: a Celery chord on the same broker, with the Redis result backend a chord needs (its header's
results are counted and kept there until the callback runs). The callback stamps when it started."""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery

from core.queue import celery_config
from core.settings import Settings

STARTED_KEY = "bench:chord_started"


def make_chord_app(broker_url: str, backend_url: str) -> tuple[Celery, redis.Redis]:
    app = Celery("chord", set_as_current=False)
    app.config_from_object(celery_config(Settings(broker_url=broker_url)))  # same transport options, acks_late
    app.conf.update(result_backend=backend_url, result_expires=600)
    stamps = redis.Redis.from_url(backend_url.replace("redis+socket://", "unix://"))

    @app.task(name="bench.item", shared=False)
    def item(value: int) -> dict[str, Any]:
        return {"value": value}

    @app.task(name="bench.gather", shared=False)
    def gather(results: list[dict[str, Any]]) -> int:
        stamps.rpush(STARTED_KEY, f"{time.time()} {len(results)}")  # when the callback started, and what it got
        return len(results)

    return app, stamps


if "BENCH_BROKER_URL" in os.environ:  # `celery -A bench.bare_chord worker` (the benchmark sets both variables)
    app, _ = make_chord_app(os.environ["BENCH_BROKER_URL"], os.environ["BENCH_BACKEND_URL"])
