"""The baselines' Celery app on the same broker (no result backend): a no-op task whose only effect is a counter in
Redis so the benchmark can see completion (bare Celery), and the hand-rolled app's task, which marks its job's row
done in the SQL table the hand-rolled Flask app inserted it into (bench/bare_flask.py)."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery
from sqlalchemy import Engine, text

from core.queue import celery_config
from core.settings import Settings

COUNTER_KEY = "bench:done"
LATENCY_KEY = "bench:latency"
TABLE = "bare_jobs"


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

    engines: list[Engine] = []  # made on first use, in the worker's forked child (an engine does not survive a fork)

    @app.task(name="bench.mark_done", ignore_result=True)
    def mark_done(job_id: str) -> None:
        """What a hand-rolled app's task does at the least: record in its table that the job ran."""
        if not engines:
            from core.db import make_engine

            engines.append(make_engine(os.environ["BENCH_DATABASE_URL"], pool_size=1))
        with engines[0].begin() as connection:
            connection.execute(text(f"UPDATE {TABLE} SET status = 'done' WHERE id = :id"), {"id": job_id})  # noqa: S608

    return app, counter


if "BENCH_BROKER_URL" in os.environ:  # `celery -A bench.bare_celery worker` (the benchmark sets both variables)
    app, _ = make_bare_app(os.environ["BENCH_BROKER_URL"], os.environ["BENCH_COUNTER_URL"])
