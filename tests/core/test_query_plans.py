"""PostgreSQL plans the per-job statements on the primary key once the reconciler has given `jobs` statistics:
without them a status or tenant index costs the same, and a claim, completion or read may walk every queued row
(a 20,000-job batch read 243 million index entries that way)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, text

from core.db import make_engine, make_sessionmaker
from core.failures import GroupFilter, group_counts
from core.jobs import claim_job, complete_and_claim, complete_job
from core.migrate import upgrade_database
from core.models import Job
from core.planner_stats import MIN_CHANGED_ROWS, refresh_planner_statistics
from core.queries import get_job
from core.quotas import active_jobs_by_tenant, active_jobs_query
from core.submit import by_idempotency_key, by_schedule_slot, by_unique_key
from core.types import utcnow
from tests.core.factories import queued_job_row
from tests.support.backends import postgres_database

BACKLOG = 3000


@pytest.fixture
def fresh_postgres() -> Iterator[Engine]:
    """A new database (never analysed, like any new deployment's) behind a one-connection pool, so that every
    statement below reuses that connection's prepared statements."""
    with postgres_database() as url:
        upgrade_database(url)
        engine = make_engine(url, pool_size=1, max_overflow=0)
        yield engine
        engine.dispose()


def add_queued(engine: Engine, count: int) -> list[uuid.UUID]:
    now = utcnow()
    rows = [queued_job_row(now) for _ in range(count)]
    with engine.begin() as conn:
        conn.execute(insert(Job), rows)
    return [row["id"] for row in rows]  # type: ignore[misc]


def run_jobs(engine: Engine, ids: list[uuid.UUID]) -> None:
    """What a worker and a polling client do per job: claim, complete, read; in messages of two jobs, so that the
    first claim and the last completion of a message run alone and the completion between them claims the next."""
    sessions = make_sessionmaker(engine)
    for first, second in zip(ids[::2], ids[1::2], strict=True):
        with sessions() as session:
            claimed = claim_job(session, job_id=first, worker="w@h:1", lease_seconds=30)
            assert claimed is not None
            completed, claimed = complete_and_claim(session, job_id=first, attempt=claimed.attempt, worker="w@h:1",
                                                    data={}, next_job_id=second, lease_seconds=30)  # fmt: skip
            assert completed and claimed is not None
            assert complete_job(session, job_id=second, attempt=claimed.attempt, worker="w@h:1", data={})
            session.commit()
        with sessions() as session:
            assert [get_job(session, job_id).status for job_id in (first, second)] == ["succeeded"] * 2


def index_tuples_read(engine: Engine) -> int:
    """Index entries read on `jobs` so far, this connection's pending statistics included."""
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_force_next_flush()"))  # flushed as the statement's transaction ends
        conn.commit()
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        read = conn.execute(
            select(func.coalesce(func.sum(text("idx_tup_read")), 0)).select_from(text("pg_stat_user_indexes"))
            .where(text("relname = 'jobs'"))
        ).scalar_one()  # fmt: skip
        conn.rollback()
    return int(read)


def refresh(engine: Engine) -> list[str]:
    with make_sessionmaker(engine)() as session, session.begin():
        return refresh_planner_statistics(session)


def test_per_job_statements_read_one_row_once_the_table_has_statistics(fresh_postgres: Engine) -> None:
    engine = fresh_postgres
    # A few jobs while the table is small: past psycopg's prepare threshold (5) and PostgreSQL's five custom plans.
    run_jobs(engine, add_queued(engine, 20))
    assert refresh(engine) == []  # too few changes to bother
    later = add_queued(engine, BACKLOG + 10)
    index_tuples_read(engine)  # the inserts' statistics reach pg_stat_user_tables
    assert refresh(engine) == ["jobs"]
    assert refresh(engine) == []  # fresh now: no ANALYZE on every tick
    before = index_tuples_read(engine)
    run_jobs(engine, later[:10])
    per_job = (index_tuples_read(engine) - before) / 10
    # The primary key reads a handful of entries per statement; a status or tenant index reads the backlog.
    assert per_job < 50, f"{per_job:.0f} index entries read per job behind {BACKLOG} queued rows"
    assert BACKLOG > MIN_CHANGED_ROWS


def test_sqlite_gets_sampled_statistics_as_the_table_grows(clean_db: Engine) -> None:
    if clean_db.dialect.name != "sqlite":
        pytest.skip("PostgreSQL is the test above")
    add_queued(clean_db, MIN_CHANGED_ROWS - 1)
    assert refresh(clean_db) == []  # too few rows to bother
    add_queued(clean_db, 1)
    assert refresh(clean_db) == ["jobs"]
    assert refresh(clean_db) == []  # fresh now: no ANALYZE on every tick
    with clean_db.connect() as conn:
        analysed = dict(conn.execute(text("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'jobs'")).all())
    assert "ix_jobs_tenant_created" in analysed and "ix_jobs_waiting" in analysed, analysed
    add_queued(clean_db, MIN_CHANGED_ROWS + 1)
    assert refresh(clean_db) == ["jobs"]  # doubled


KEY_LOOKUPS = {
    "uq_jobs_tenant_idempotency_key": lambda: by_idempotency_key("default", "key-1"),
    "uq_jobs_active_unique_key": lambda: by_unique_key("default", "daily-report"),
    "uq_jobs_schedule_slot": lambda: by_schedule_slot(uuid.uuid4(), utcnow()),
}


@pytest.mark.parametrize("index", list(KEY_LOOKUPS))
def test_a_submit_looks_a_key_up_in_its_index(clean_db: Engine, index: str) -> None:
    """The key indexes hold only the rows that have the key (migration 0005). The submit's lookups, with the key in a
    bound parameter, must still use them: SQLite uses a partial index only when the query repeats its terms (the
    unique-key lookup, a list of bound statuses, searched every job of the tenant before)."""
    plan = plan_of(clean_db, KEY_LOOKUPS[index]())
    assert index in plan, plan


def plan_of(engine: Engine, statement: Any) -> str:
    compiled = statement.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            params = tuple(str(compiled.params[name]) for name in compiled.positiontup or ())  # a plan needs no type
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params)
            return " ".join(str(row[-1]) for row in rows)
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a scan only where the index cannot serve
        return " ".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params))


QUOTA_COUNTS = {
    "a submit's count of its tenant's newer unfinished jobs": lambda _dialect: active_jobs_query("default"),
    "the maintenance tick's count of every tenant's": active_jobs_by_tenant,
}


@pytest.mark.parametrize("statement", list(QUOTA_COUNTS))
def test_the_quota_counts_read_the_unfinished_jobs_index(clean_db: Engine, statement: str) -> None:
    """Both counts read only unfinished jobs (ix_jobs_tenant_active), never the whole ledger (core/quotas.py)."""
    plan = plan_of(clean_db, QUOTA_COUNTS[statement](clean_db.dialect.name))
    assert "ix_jobs_tenant_active" in plan, plan


FAILURE_QUERIES = {
    "the groups": lambda: group_counts("default", GroupFilter()),
    "the groups of the retrying jobs": lambda: group_counts("default", GroupFilter(status="retrying")),
    "a group's jobs": lambda: select(Job.id).where(*GroupFilter().where("default"), Job.error_fingerprint == "0" * 16),
}


@pytest.mark.parametrize("statement", list(FAILURE_QUERIES))
def test_the_failure_groups_read_their_index(clean_db: Engine, statement: str) -> None:
    """Grouping a tenant's failures reads ix_jobs_failures (the failed and retrying jobs only), never the ledger."""
    plan = plan_of(clean_db, FAILURE_QUERIES[statement]())
    assert "ix_jobs_failures" in plan, plan
