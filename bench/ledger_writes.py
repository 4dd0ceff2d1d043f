"""What one job's claim and completion write to the database, with the schema at head and at an earlier revision
(by default 0015, before the status indexes became partial): SQLite WAL bytes per job (automatic checkpoints off, so
the WAL only grows), and the growth per job of the `jobs` table's indexes on PostgreSQL. Also the CPU per job of the
loop that makes the writes: one process running a worker's statements (claim, then completion and the next claim in
one unit of work, as a shared message's jobs are run), no broker and no handler.

The byte counts are exact for a given schema and do not move with the VM; the CPU figures do (alternate rounds).

    .venv/bin/python bench/ledger_writes.py [--jobs 3000] [--against 0015] [--rounds 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import Engine, event, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.queue_throughput import RESULTS, machine
from core.db import make_engine, make_sessionmaker
from core.jobs import claim_job, complete_and_claim, complete_job
from core.migrate import alembic_config, upgrade_database
from core.models import Job
from core.types import utcnow
from tests.core.factories import queued_job_row
from tests.support.backends import postgres_database

INDEX_BYTES = "SELECT sum(pg_relation_size(indexrelid)) FROM pg_index WHERE indrelid = 'jobs'::regclass"


@contextmanager
def database(kind: str, revision: str) -> Iterator[tuple[str, Path | None]]:
    """A new database migrated to `revision` ("head" or an earlier one): (URL, the SQLite file or None)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ledger-writes-") as directory:
            path = Path(directory) / "conveyor.db"
            url = f"sqlite:///{path}"
            migrate(url, revision)
            yield url, path
        return
    with postgres_database() as url:
        migrate(url, revision)
        yield url, None


def migrate(url: str, revision: str) -> None:
    upgrade_database(url)
    if revision != "head":
        command.downgrade(alembic_config(url), revision)


def queued(engine: Engine, count: int) -> list[uuid.UUID]:
    rows = [queued_job_row(utcnow()) for _ in range(count)]
    with engine.begin() as connection:
        connection.execute(insert(Job), rows)
    return [row["id"] for row in rows]  # type: ignore[misc]


def run_jobs(engine: Engine, ids: list[uuid.UUID]) -> float:
    """Claim the first job, then complete each and claim the next in one unit of work, as a worker runs a shared
    message's jobs; CPU ms per job."""
    started = time.process_time()
    with make_sessionmaker(engine)() as session:
        claimed = claim_job(session, job_id=ids[0], worker="bench@host:1", lease_seconds=30)
        session.commit()
        for current, following in itertools.pairwise(ids):
            assert claimed is not None, "every job here is claimable"
            _, claimed = complete_and_claim(session, job_id=current, attempt=claimed.attempt, worker="bench@host:1",
                                            data={}, next_job_id=following, lease_seconds=30)  # fmt: skip
            session.commit()
        assert claimed is not None
        complete_job(session, job_id=ids[-1], attempt=claimed.attempt, worker="bench@host:1", data={})
        session.commit()
    return (time.process_time() - started) / len(ids) * 1000


def measure(kind: str, revision: str, jobs: int) -> dict[str, Any]:
    with database(kind, revision) as (url, path):
        engine = make_engine(url)
        try:
            ids = queued(engine, jobs)
            if path is not None:  # the WAL only grows: no automatic checkpoint, and an empty one to start from
                event.listen(engine, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA wal_autocheckpoint=0"))
                engine.dispose()
                with sqlite3.connect(path) as raw:
                    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                wal = path.with_name(path.name + "-wal")
                cpu = run_jobs(engine, ids)
                return {"backend": kind, "revision": revision, "jobs": jobs, "cpu_ms_per_job": round(cpu, 3),
                        "wal_kib_per_job": round(wal.stat().st_size / jobs / 1024, 1)}  # fmt: skip
            with engine.connect() as connection:
                before = connection.execute(text(INDEX_BYTES)).scalar_one()
            cpu = run_jobs(engine, ids)
            with engine.connect() as connection:
                after = connection.execute(text(INDEX_BYTES)).scalar_one()
            return {"backend": kind, "revision": revision, "jobs": jobs, "cpu_ms_per_job": round(cpu, 3),
                    "index_bytes_per_job": round((after - before) / jobs)}  # fmt: skip
        finally:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--against", default="0015", help="the earlier revision measured beside head")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (the CPU figures move with the VM)")
    parser.add_argument("--name", default="ledger_writes", help="file name under bench/results/")
    args = parser.parse_args()
    rows = [measure(kind, revision, args.jobs) for _ in range(args.rounds) for kind in ("sqlite", "postgresql")
            for revision in (args.against, "head")]  # fmt: skip
    print(f"{'backend':<11} {'revision':>8} {'CPU ms/job':>11} {'written per job':>22}")
    for row in rows:
        written = (f"{row['wal_kib_per_job']} KiB of WAL" if "wal_kib_per_job" in row
                   else f"{row['index_bytes_per_job']} B of index")  # fmt: skip
        print(f"{row['backend']:<11} {row['revision']:>8} {row['cpu_ms_per_job']:>11} {written:>22}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": args.name, **machine(), "results": rows}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
