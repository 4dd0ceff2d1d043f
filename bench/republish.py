"""How fast the jobs a queue's pause held, or a broker outage left unpublished, get their messages again.

- resume: N queued jobs of a paused queue, then `resume_queue` (what `POST /v1/queues/{queue}/resume` and
  `conveyor queues resume` run) against a real Redis broker: jobs/s and messages sent (jobs share messages, as a
  batch submit's do).
- outage: N queued jobs whose publish failed (published_at NULL), then reconciler ticks until none is left: ticks,
  each tick's duration and how many jobs and messages it sent.
Both on PostgreSQL and on SQLite, in the same run. Redis DB 13 is used and flushed.

    .venv/bin/python bench/republish.py [--jobs 100000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.queue_throughput import RESULTS, machine
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade_database
from core.models import Job
from core.queue import CeleryPublisher, make_celery
from core.queue_ops import pause_queue, resume_queue
from core.reconcile import reconcile
from core.registry import load_registry
from core.settings import Settings
from core.types import utcnow
from tests.core.factories import queued_job_row
from tests.support.backends import postgres_database

BROKER_DB = 13
PER_MESSAGE = 50  # CONVEYOR_JOBS_PER_MESSAGE's default


@contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "postgresql":
        with postgres_database() as url:
            upgrade_database(url)
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="republish-") as directory:
        url = f"sqlite:///{directory}/conveyor.db"
        upgrade_database(url)
        yield url


def fill(engine: Engine, jobs: int, **columns: Any) -> None:
    made = utcnow() - timedelta(seconds=30)  # past the reconciler's grace for a publish under way
    with engine.begin() as connection:
        for start in range(0, jobs, 10_000):
            rows = [queued_job_row(made) | columns for _ in range(min(10_000, jobs - start))]
            connection.execute(insert(Job), rows)


def messages_in_broker(client: redis.Redis) -> int:
    return sum(client.llen(key) for key in client.keys("default*"))  # one list per priority band


def resume(kind: str, jobs: int) -> dict[str, Any]:
    with database(kind) as url:
        engine = make_engine(url)
        fill(engine, jobs)
        sessions = make_sessionmaker(engine)
        with sessions() as session, session.begin():
            pause_queue(session, "default", tenant_id="default", actor=None, reason="bench")
        settings = Settings(broker_url=f"redis://127.0.0.1:6379/{BROKER_DB}", database_url=url)
        publisher = CeleryPublisher(make_celery(settings, producer=True), lean=True)
        client = redis.Redis(db=BROKER_DB)
        client.flushdb()
        started = time.perf_counter()
        published = resume_queue(sessions, publisher, "default", tenant_id="default", registry=load_registry(),
                                 jobs_per_message=PER_MESSAGE)  # fmt: skip
        seconds = time.perf_counter() - started
        sent = messages_in_broker(client)
        client.flushdb()
        engine.dispose()
    assert published == jobs, f"resumed {published} of {jobs}"
    return {"backend": kind, "jobs": jobs, "seconds": round(seconds, 2), "jobs_per_s": round(jobs / seconds),
            "messages": sent}  # fmt: skip


def outage(kind: str, jobs: int) -> dict[str, Any]:
    with database(kind) as url:
        engine = make_engine(url)
        fill(engine, jobs, published_at=None)
        sessions = make_sessionmaker(engine)
        registry = load_registry()
        ticks: list[tuple[float, int, int]] = []
        while True:
            started = time.perf_counter()
            with sessions() as session, session.begin():
                report = reconcile(session, republish_after=60, backoff_cap=60, broker_depth=None, registry=registry,
                                   jobs_per_message=PER_MESSAGE)  # fmt: skip
            if not report.republished:
                break
            ticks.append((time.perf_counter() - started, report.republished, len(report.to_publish)))
        engine.dispose()
    assert sum(jobs_sent for _, jobs_sent, _ in ticks) == jobs
    durations = sorted(seconds for seconds, _, _ in ticks)
    return {"backend": kind, "jobs": jobs, "ticks": len(ticks), "jobs_per_tick": ticks[0][1],
            "messages_per_tick": ticks[0][2], "tick_ms_median": round(durations[len(durations) // 2] * 1000),
            "tick_ms_max": round(durations[-1] * 1000)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    resumes = [resume(kind, args.jobs) for kind in ("postgresql", "sqlite")]
    outages = [outage(kind, args.jobs // 2) for kind in ("postgresql", "sqlite")]
    for row in resumes:
        print(f"resume  {row['backend']:<11} {row['jobs']:>8} jobs in {row['seconds']:>6} s = {row['jobs_per_s']:>6} "
              f"jobs/s, {row['messages']} messages")  # fmt: skip
    for row in outages:
        print(f"outage  {row['backend']:<11} {row['jobs']:>8} jobs in {row['ticks']} ticks of {row['jobs_per_tick']} "
              f"jobs / {row['messages_per_tick']} messages, tick median {row['tick_ms_median']} ms, max "
              f"{row['tick_ms_max']} ms")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": "republish", **machine(), "resume": resumes, "outage": outages}
    (RESULTS / "republish.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
