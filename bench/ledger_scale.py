"""Conveyor's speed as the ledger grows (issue 22, item 1, first part): the same measurements on a nearly empty ledger
and on ledgers holding more and more finished jobs, in the same run on the same machine, each size a fresh Conveyor
(API, 2 worker processes, maintenance) on the same database, grown in place:

- end-to-end jobs/s, single submits (8 connections) and batches of 1,000, as bench/queue_throughput.py measures;
- `POST /v1/jobs` p50/p99 at 8 connections while the workers drain;
- one reconciler tick, and its read of the whole backlog (in this process, against the deployment's database),
  median and slowest of 5;
- `GET /v1/jobs` first page, a filtered page (`status=failed&type=sleep`) and `GET /v1/queues`, p50/p99;
- the database's size.

The ledger is filled directly (server-side `generate_series` on PostgreSQL, `executemany` on SQLite): finished jobs
spread over the last 30 days, 90 % succeeded, 7 % failed (one cause), 3 % cancelled, a tenth of them of type `sleep`,
each with its events (queued, running, its end) and a succeeded job with its result. Ratios are against the first
size's figures of the same run: 5,000 jobs by default, an empty ledger but for a page of each filter (on an empty
one the filtered page came back empty, and an empty page is no baseline for a full one). Targets: jobs/s >= 0.9x on
PostgreSQL at the largest size, >= 0.8x on SQLite; POST p99 <= 1.2x; pages p99 <= 2x.

    .venv/bin/python bench/ledger_scale.py [--backend services|embedded] [--sizes 5000,1000000,10000000] [--quick]

The backlog part of the issue (1,000,000 jobs queued and drained) is bench/backlog.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api_load import load
from bench.queue_throughput import RESULTS, backend_urls, bench_cluster, conveyor_run, drain, machine, unfinished
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade_database
from core.queries import backlog
from core.quotas import refresh_usage
from core.reconcile import reconcile

SIZES = {"services": "5000,1000000,10000000", "embedded": "5000,100000,1000000"}
QUICK_SIZES = {"services": "5000,50000", "embedded": "5000,20000"}
LATENCY_SECONDS = 5
FILL_CHUNK = 200_000
# Retention off: the ledger keeps its size while it is measured. With the defaults (7 days for succeeded jobs) the
# pruner deleted the filled history's older three quarters during the measurement, and on SQLite its deletes hold the
# one write lock (bench/prune.py measures the pruner).
KEEP_EVERY_JOB = {f"retention_{status}_days": "0" for status in ("succeeded", "failed", "cancelled")}
DAYS = 30

# One statement per chunk, server-side (data-modifying CTEs): rows `start` .. `end`-1 of a ledger of `total` rows
# spread over DAYS, with their events and results.
PG_FILL = """
WITH made AS (
  INSERT INTO jobs (id, tenant_id, type, queue, priority, status, payload, attempt, max_attempts, message_jobs,
                    cancel_requested, created_at, updated_at, started_at, finished_at, published_at, error,
                    error_fingerprint, failed_at)
  SELECT gen_random_uuid(), 'default', CASE WHEN i % 10 = 0 THEN 'sleep' ELSE 'echo' END, 'default', 5, status,
         '{"message": "old"}'::jsonb, 1, 3, 1, false, t, t, t, t, t,
         CASE WHEN status = 'failed' THEN '{"type": "ValueError", "message": "boom"}'::jsonb END,
         CASE WHEN status = 'failed' THEN '0123456789abcdef' END, CASE WHEN status = 'failed' THEN t END
  FROM (SELECT i, now() - make_interval(days => :days) + (i::float8 / :total) * make_interval(days => :days) AS t,
               CASE WHEN i % 100 < 90 THEN 'succeeded' WHEN i % 100 < 97 THEN 'failed' ELSE 'cancelled' END
               AS status
        FROM generate_series(:start, :end - 1) AS i) AS s
  RETURNING id, status, created_at
), events AS (
  INSERT INTO job_events (job_id, kind, attempt, created_at)
  SELECT made.id, CASE WHEN k.kind = 'end' THEN made.status ELSE k.kind END,
         CASE WHEN k.kind = 'queued' THEN 0 ELSE 1 END, made.created_at
  FROM made CROSS JOIN (VALUES ('queued'), ('running'), ('end')) AS k(kind)
)
INSERT INTO job_results (job_id, data, created_at)
SELECT id, '{"message": "old"}'::jsonb, created_at FROM made WHERE status = 'succeeded'
"""


def now() -> datetime:
    return datetime.now(UTC)


def fill(url: str, have: int, want: int, total: int) -> None:
    """Add finished jobs `have` .. `want`-1 of a ledger that will hold `total` (their place sets their time)."""
    if want <= have:
        return
    started = time.perf_counter()
    engine = make_engine(url)
    try:
        for start in range(have, want, FILL_CHUNK):
            end = min(start + FILL_CHUNK, want)
            (fill_postgres if url.startswith("postgresql") else fill_sqlite)(engine, start, end, total)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE" if url.startswith("postgresql") else "ANALYZE")
    finally:
        engine.dispose()
    print(f"  ledger grown to {want:,} finished jobs in {time.perf_counter() - started:.0f} s")


def placed(i: int, total: int) -> datetime:
    return now() - timedelta(days=DAYS) + timedelta(days=DAYS) * (i / max(total, 1))


def fill_postgres(engine: Engine, start: int, end: int, total: int) -> None:
    with engine.begin() as connection:
        connection.execute(text(PG_FILL), {"start": start, "end": end, "total": max(total, 1), "days": DAYS})


def status_of(i: int) -> str:
    return "succeeded" if i % 100 < 90 else "failed" if i % 100 < 97 else "cancelled"


def fill_sqlite(engine: Engine, start: int, end: int, total: int) -> None:
    """The same rows as PG_JOBS, made here (SQLite's text timestamps as SQLAlchemy writes them)."""
    jobs, events, results = [], [], []
    for i in range(start, end):
        job_id, status = uuid.uuid4().hex, status_of(i)
        at = placed(i, total).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
        failed = status == "failed"
        jobs.append((job_id, "sleep" if i % 10 == 0 else "echo", status, at,
                     '{"type": "ValueError", "message": "boom"}' if failed else None,
                     "0123456789abcdef" if failed else None, at if failed else None))  # fmt: skip
        events += [(job_id, "queued", 0, at), (job_id, "running", 1, at), (job_id, status, 1, at)]
        if status == "succeeded":
            results.append((job_id, '{"message": "old"}', at))
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO jobs (id, tenant_id, type, queue, priority, status, payload, attempt, max_attempts, "
            "message_jobs, cancel_requested, created_at, updated_at, started_at, finished_at, published_at, error, "
            "error_fingerprint, failed_at) VALUES (?1, 'default', ?2, 'default', 5, ?3, '{\"message\": \"old\"}', 1, "
            "3, 1, 0, ?4, ?4, ?4, ?4, ?4, ?5, ?6, ?7)",
            jobs,
        )
        connection.exec_driver_sql("INSERT INTO job_events (job_id, kind, attempt, created_at) VALUES (?, ?, ?, ?)",
                                   events)  # fmt: skip
        connection.exec_driver_sql("INSERT INTO job_results (job_id, data, created_at) VALUES (?, ?, ?)", results)


def database_bytes(url: str) -> int:
    if not url.startswith("postgresql"):
        path = Path(url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    engine = make_engine(url)
    with engine.connect() as connection:
        size = int(connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    engine.dispose()
    return size


def tick_ms(url: str, rounds: int = 5) -> dict[str, float]:
    """One reconciler tick as beat sends it every 2 s, and the read of the whole backlog it adds every
    CONVEYOR_BACKLOG_INTERVAL (lost messages, the quotas' usage, the backlog gauges), each timed in this process and
    rolled back: median and slowest of `rounds`."""
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)

    def tick(session: Session) -> None:
        reconcile(session, republish_after=60, backoff_cap=60, broker_depth=None)

    def backlog_read(session: Session) -> None:
        reconcile(session, republish_after=60, backoff_cap=60, broker_depth=lambda _queue: 1_000_000)
        refresh_usage(session)
        backlog(session)

    figures: dict[str, float] = {}
    try:
        for name, work in (("", tick), ("backlog_read_", backlog_read)):
            times = []
            for _ in range(rounds):
                with sessions() as session:
                    started = time.perf_counter()
                    work(session)
                    times.append((time.perf_counter() - started) * 1000)
                    session.rollback()
            figures |= {f"{name}p50_ms": round(statistics.median(times), 2), f"{name}max_ms": round(max(times), 2)}
    finally:
        engine.dispose()
    return figures


Call = Callable[[requests.Session, int], requests.Response]


def latency(call: Call) -> dict[str, float]:
    """8 connections sending `call` for LATENCY_SECONDS: requests/s, p50, p99."""
    return load(call, LATENCY_SECONDS, expect=(200, 202))


def measure(kind: str, directory: Path, url: str, broker: str, size: int, jobs: int) -> dict[str, Any]:
    with bench_cluster(directory, url, broker, worker_concurrency="2", api_workers="1", log_level="WARNING",
                       **KEEP_EVERY_JOB) as (cluster, meter):  # fmt: skip
        single, _, _ = conveyor_run(cluster, jobs, meter, batch=False)
        batch, _, _ = conveyor_run(cluster, jobs, meter, batch=True)
        base, auth = cluster.base, cluster.auth
        body: dict[str, Any] = {"type": "echo", "payload": {"message": "p"}}

        def get(path: str) -> Call:
            return lambda http, _n: http.get(base + path, headers=auth, timeout=30)

        def post(http: requests.Session, _n: int) -> requests.Response:
            return http.post(base + "/v1/jobs", json=body, headers=auth, timeout=30)

        figures: dict[str, Any] = {
            "backend": kind, "finished_jobs": size, "single_jobs_per_s": round(single, 1),
            "batch_jobs_per_s": round(batch, 1),
            "jobs_page": latency(get("/v1/jobs?limit=50")),
            "failed_sleep_page": latency(get("/v1/jobs?limit=50&status=failed&type=sleep")),
            "queues": latency(get("/v1/queues")),
            "reconcile_tick": tick_ms(url),
            "post": latency(post),  # last: the workers drain what it made before the next step
        }  # fmt: skip
        drain(lambda: unfinished(cluster))
        figures["database_mb"] = round(database_bytes(url) / 2**20, 1)
    print(f"  {size:>10,} finished: single {figures['single_jobs_per_s']}/s, batch {figures['batch_jobs_per_s']}/s, "
          f"POST p99 {figures['post']['p99_ms']} ms, tick {figures['reconcile_tick']['p50_ms']} ms "
          f"(backlog read {figures['reconcile_tick']['backlog_read_p50_ms']} ms), "
          f"pages p99 {figures['jobs_page']['p99_ms']} / {figures['failed_sleep_page']['p99_ms']} ms, "
          f"queues p99 {figures['queues']['p99_ms']} ms, {figures['database_mb']} MB")  # fmt: skip
    return figures


def ratios(rows: list[dict[str, Any]]) -> None:
    """Each size against the first size's row of the same run."""
    empty = rows[0]
    print(f"{'finished jobs':>14} {'single':>8} {'batch':>8} {'POST p99':>9} {'page p99':>9} {'filtered':>9} "
          f"{'queues':>8} {'tick ms':>8} {'MB':>8}")  # fmt: skip
    for row in rows:
        print(f"{row['finished_jobs']:>14,} "
              f"{row['single_jobs_per_s'] / empty['single_jobs_per_s']:>7.2f}x "
              f"{row['batch_jobs_per_s'] / empty['batch_jobs_per_s']:>7.2f}x "
              f"{row['post']['p99_ms'] / empty['post']['p99_ms']:>8.2f}x "
              f"{row['jobs_page']['p99_ms'] / empty['jobs_page']['p99_ms']:>8.2f}x "
              f"{row['failed_sleep_page']['p99_ms'] / empty['failed_sleep_page']['p99_ms']:>8.2f}x "
              f"{row['queues']['p99_ms'] / empty['queues']['p99_ms']:>7.2f}x "
              f"{row['reconcile_tick']['p50_ms']:>8} {row['database_mb']:>8}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="services", choices=["services", "embedded"])
    parser.add_argument("--sizes", help="finished jobs in the ledger at each step, ascending (default by backend)")
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per end-to-end run")
    parser.add_argument("--quick", action="store_true", help="a smoke run: small sizes, 1,000 jobs per run")
    parser.add_argument("--name", default=None, help="file name under bench/results/ (default ledger_scale_BACKEND)")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or (QUICK_SIZES if args.quick else SIZES)[args.backend]).split(",")]
    jobs = 1000 if args.quick else args.jobs
    rows = []
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ledger-scale-")))
        url, broker, _counter = backend_urls(args.backend, directory, stack)
        upgrade_database(url)
        have = 0
        for size in sizes:
            fill(url, have, size, sizes[-1])
            have = max(have, size)
            rows.append(measure(args.backend, directory / f"ledger-{size}", url, broker, size, jobs))
    ratios(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = args.name or f"ledger_scale_{args.backend}"
    record = {"benchmark": name, **machine(), "jobs_per_run": jobs, "results": rows}
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
