"""Failure groups over a million failures: PostgreSQL holding 1,000,000 failed jobs of one tenant (20 causes, beside
1,000,000 succeeded ones of the same tenant), GET /v1/failures's grouping (core.failures.list_groups: the partial
index of failed and retrying rows, by stored fingerprint) against the same grouping computed from each row's error
JSON (what grouping without a stored fingerprint reads), in the same run. Prints the median of each and the ratio.

    .venv/bin/python bench/failure_groups.py [--failed 1000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.db import make_engine, make_sessionmaker
from core.failures import GroupFilter, fingerprint, list_groups
from core.migrate import upgrade_database
from tests.support.backends import postgres_database

CAUSES = 20
# Server-side, one statement per status: a million rows in seconds. Failed rows carry their cause's error and its
# fingerprint, as core.jobs.fail_attempt writes them.
FAILED = """
INSERT INTO jobs (id, tenant_id, type, queue, priority, status, payload, attempt, max_attempts, message_jobs,
                  cancel_requested, created_at, updated_at, finished_at, failed_at, error, error_fingerprint)
SELECT gen_random_uuid(), 'default', 'fail', 'default', 0, 'failed', '{}', 1, 1, 1, false, t, t, t, t,
       (CAST(:errors AS jsonb)) -> (i % :causes), (CAST(:prints AS jsonb)) ->> (i % :causes)
FROM (SELECT i, now() - interval '30 days' + i * interval '1 millisecond' AS t FROM generate_series(1, :n) AS i) s
"""
SUCCEEDED = """
INSERT INTO jobs (id, tenant_id, type, queue, priority, status, payload, attempt, max_attempts, message_jobs,
                  cancel_requested, created_at, updated_at, finished_at)
SELECT gen_random_uuid(), 'default', 'echo', 'default', 0, 'succeeded', '{}', 1, 1, 1, false, t, t, t
FROM (SELECT now() - interval '30 days' + i * interval '1 millisecond' AS t FROM generate_series(1, :n) AS i) s
"""


# The baseline: what a grouping reads without a stored fingerprint (and before normalising any message).
BY_JSON = """
SELECT type, error ->> 'type', error ->> 'message', error ->> 'where', count(*), min(finished_at), max(finished_at)
FROM jobs WHERE tenant_id = 'default' AND status = 'failed' GROUP BY 1, 2, 3, 4
"""


def fill(engine: Engine, failed: int) -> None:
    # causes apart by a word (numbers are taken out of the fingerprint), each message with its own number
    errors = [{"type": "TimeoutError", "message": f"upstream {chr(97 + n) * 3} timed out after {n}1 s",
               "where": "tasks/x.py:run"} for n in range(CAUSES)]  # fmt: skip
    prints = [fingerprint("fail", error) for error in errors]
    with engine.begin() as conn:
        conn.execute(text(FAILED), {"n": failed, "causes": CAUSES, "errors": json.dumps(errors),
                                    "prints": json.dumps(prints)})  # fmt: skip
        conn.execute(text(SUCCEEDED), {"n": failed})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE jobs"))  # statistics, and the visibility map an index-only scan needs


def timed(call: Callable[[], object], rounds: int) -> float:
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--failed", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with postgres_database() as url:
        upgrade_database(url)
        engine = make_engine(url)
        started = time.perf_counter()
        fill(engine, args.failed)
        print(
            f"filled {args.failed:,} failed + {args.failed:,} succeeded jobs in {time.perf_counter() - started:.1f} s"
        )
        sessions = make_sessionmaker(engine)
        with sessions() as session:
            groups, _ = list_groups(session, tenant_id="default", matching=GroupFilter(), limit=50)
            assert len(groups) == CAUSES and sum(g.count for g in groups) == args.failed
            by_json = text(BY_JSON)
            assert len(session.execute(by_json).all()) == CAUSES
            stored = timed(lambda: list_groups(session, tenant_id="default", matching=GroupFilter(), limit=50),
                           args.rounds)  # fmt: skip
            computed = timed(lambda: session.execute(by_json).all(), args.rounds)
        engine.dispose()
    print(f"GET /v1/failures grouping, stored fingerprints (partial index): {stored * 1000:.0f} ms median")
    print(f"the same grouping from each row's error JSON:                    {computed * 1000:.0f} ms median")
    print(f"ratio: {computed / stored:.1f}x faster with the stored fingerprint")


if __name__ == "__main__":
    main()
