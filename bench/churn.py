"""What dead row versions cost PostgreSQL when nothing vacuums `jobs` (migration 0018's reason).

Rounds of N jobs each: insert them queued, run each through a worker's claim and completion statements (as
bench/ledger_writes.py does, in this process, no broker), then time one reconciler tick (without the backlog read)
and read the table's dead row versions and size. Once with no vacuum at all (this VM's PostgreSQL runs with
autovacuum off, as a server whose autovacuum waits for 20 % of a large table effectively does), once with
`VACUUM (ANALYZE)` after every round (what migration 0018's settings make autovacuum do). Same run, same machine.

    .venv/bin/python bench/churn.py [--rounds 30] [--jobs 10000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ledger_writes import queued, run_jobs
from bench.queue_throughput import RESULTS, machine
from core.db import make_engine, make_sessionmaker
from core.migrate import upgrade_database
from core.reconcile import reconcile
from tests.support.backends import postgres_database

TABLE = "SELECT n_dead_tup, pg_total_relation_size('jobs') FROM pg_stat_user_tables WHERE relname = 'jobs'"


def churn(rounds: int, jobs: int, *, vacuum: bool) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    with postgres_database() as url:
        upgrade_database(url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        for number in range(1, rounds + 1):
            ids = queued(engine, jobs)
            started = time.perf_counter()
            run_jobs(engine, ids)
            worker_ms = (time.perf_counter() - started) / jobs * 1000
            with sessions() as session:
                started = time.perf_counter()
                reconcile(session, republish_after=60, backoff_cap=60, broker_depth=None)
                tick_ms = (time.perf_counter() - started) * 1000
                session.rollback()
            with engine.connect() as connection:
                dead, size = connection.execute(text(TABLE)).one()
            row = {"round": number, "jobs_run": number * jobs, "worker_ms_per_job": round(worker_ms, 3),
                   "tick_ms": round(tick_ms, 1), "dead_rows": dead, "table_mib": round(size / 2**20, 1)}  # fmt: skip
            found.append(row)
            if vacuum:
                with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                    connection.exec_driver_sql("VACUUM (ANALYZE) jobs")
        engine.dispose()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per round")
    args = parser.parse_args()
    runs = {variant: churn(args.rounds, args.jobs, vacuum=variant == "vacuum") for variant in ("none", "vacuum")}
    shown = sorted({0, args.rounds // 3, 2 * args.rounds // 3, args.rounds - 1})
    print(f"{'vacuum':<7} {'jobs run':>9} {'worker ms/job':>14} {'tick ms':>8} {'dead rows':>10} {'table MiB':>10}")
    for variant, rows in runs.items():
        for row in (rows[index] for index in shown):
            print(f"{variant:<7} {row['jobs_run']:>9} {row['worker_ms_per_job']:>14} {row['tick_ms']:>8} "
                  f"{row['dead_rows']:>10} {row['table_mib']:>10}")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": "churn", **machine(), "rounds": runs}
    (RESULTS / "churn.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
