"""The retention pruner under load: PostgreSQL holding 1,000,000 expired succeeded jobs (each with an event and a
result), the throughput benchmark's single-POST run measured without pruning (CONVEYOR_RETENTION_SUCCEEDED_DAYS=0)
and with the pruner deleting, back to back, on the same database, broker and machine. Prints the ratio (target:
>= 0.8) and how many rows the pruner deleted meanwhile.

    .venv/bin/python bench/prune.py [--expired 1000000] [--jobs 5000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from sqlalchemy import func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.queue_throughput import RESULTS, bench_cluster, conveyor_run, machine
from core.db import make_engine
from core.migrate import upgrade_database
from core.models import Job
from tests.support.backends import postgres_database, service_redis_db

# Finished 30 days ago, one millisecond apart; one `succeeded` event and one result each. Server-side, in one
# statement per table: a million rows in seconds, not a million round trips.
EXPIRED_JOBS = """
INSERT INTO jobs (id, tenant_id, type, queue, priority, status, payload, attempt, max_attempts, message_jobs,
                  cancel_requested, created_at, updated_at, started_at, finished_at, published_at)
SELECT gen_random_uuid(), 'default', 'echo', 'default', 0, 'succeeded', '{"message": "old"}', 1, 3, 1, false,
       t, t, t, t, t
FROM (SELECT now() - interval '30 days' + i * interval '1 millisecond' AS t FROM generate_series(1, :n) AS i) AS s
"""
EXPIRED_EVENTS = """
INSERT INTO job_events (job_id, kind, attempt, created_at)
SELECT id, 'succeeded', 1, finished_at FROM jobs WHERE status = 'succeeded'
"""
EXPIRED_RESULTS = """
INSERT INTO job_results (job_id, data, created_at)
SELECT id, '{"message": "old"}', finished_at FROM jobs WHERE status = 'succeeded'
"""


def old_jobs(database_url: str) -> int:
    engine = make_engine(database_url)
    with engine.connect() as connection:
        cutoff = text("now() - interval '7 days'")
        query = select(func.count()).select_from(Job).where(Job.status == "succeeded", Job.finished_at < cutoff)
        count = int(connection.scalar(query) or 0)
    engine.dispose()
    return count


def fill(database_url: str, expired: int) -> None:
    upgrade_database(database_url)
    engine = make_engine(database_url)
    started = time.perf_counter()
    with engine.begin() as connection:
        for statement in (EXPIRED_JOBS, EXPIRED_EVENTS, EXPIRED_RESULTS):
            connection.execute(text(statement), {"n": expired})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    print(f"  {expired} expired jobs (with events and results) in {time.perf_counter() - started:.0f} s")


def measure(directory: Path, database_url: str, broker_url: str, jobs: int, **settings: str) -> float:
    with bench_cluster(directory, database_url, broker_url, **settings) as (cluster, meter):
        rate, _republished, _cpu = conveyor_run(cluster, jobs, meter, batch=False)
        return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--expired", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=5000)
    args = parser.parse_args()
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-prune-")))
        database_url, broker_url = stack.enter_context(postgres_database()), stack.enter_context(service_redis_db())
        fill(database_url, args.expired)
        print("without pruning:")
        baseline = measure(directory / "baseline", database_url, broker_url, args.jobs,
                           retention_succeeded_days="0")  # fmt: skip
        left_before = old_jobs(database_url)
        print("while pruning:")
        # The pruner runs back to back (a 2 s budget every second) from the start of the run.
        pruning = measure(directory / "pruning", database_url, broker_url, args.jobs, prune_interval="1")
        left_after = old_jobs(database_url)
    deleted = left_before - left_after
    ratio = pruning / baseline
    print(
        f"throughput: {baseline:.0f}/s without pruning, {pruning:.0f}/s while pruning: ratio {ratio:.3f} "
        f"(target >= 0.8); the pruner deleted {deleted} expired jobs meanwhile, {left_after} were left"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": "prune", **machine(), "expired": args.expired, "jobs": args.jobs,
              "baseline_jobs_per_s": round(baseline, 1), "pruning_jobs_per_s": round(pruning, 1),
              "ratio": round(ratio, 3), "pruned_meanwhile": deleted, "expired_left": left_after}  # fmt: skip
    (RESULTS / "prune.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
