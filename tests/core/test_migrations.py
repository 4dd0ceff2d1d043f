"""The Alembic migrations build exactly the schema the models declare, and step down and up again."""

from __future__ import annotations

import json
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text

from core.db import make_engine, make_sessionmaker
from core.failures import fingerprint
from core.migrate import alembic_config, upgrade_database
from core.models import Base, Dataset, Job
from tests.support.backends import postgres_database


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    if engine.dialect.name == "sqlite":
        # SQLite does not report the name of a foreign key added by ALTER TABLE ADD COLUMN … REFERENCES.
        diff = [d for d in diff if d[0] not in ("add_fk", "remove_fk")]
    assert diff == []


def test_downgrade_to_the_first_revision_and_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    upgrade_database(url)
    command.downgrade(alembic_config(url), "0001")
    engine = make_engine(url)
    assert "schedules" not in inspect(engine).get_table_names()
    engine.dispose()
    upgrade_database(url)
    engine = make_engine(url)
    assert "schedule_slot" in {c["name"] for c in inspect(engine).get_columns("jobs")}
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_repeated_dataset_names_are_kept_apart_when_names_become_unique(backend: str, tmp_path: Path) -> None:
    with ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'd.db'}" if backend == "sqlite" else stack.enter_context(postgres_database())
        command.upgrade(alembic_config(url), "0010")
        engine = make_engine(url)
        stack.callback(engine.dispose)
        made = [(uuid.uuid4(), tenant, name, datetime(2026, 1, day, tzinfo=UTC))
                for day, (tenant, name) in enumerate([("a", "flights"), ("a", "flights"), ("b", "flights"),
                                                      ("a", "flights"), ("a", "other")], start=1)]  # fmt: skip
        with engine.begin() as connection:
            for dataset_id, tenant, name, created in made:
                connection.execute(
                    text("INSERT INTO datasets (id, tenant_id, name, status, table_name, schema_inferred, row_count, "
                         "reject_count, version, created_at, updated_at) VALUES (:id, :tenant, :name, 'ready', :table, "
                         "false, 0, 0, 1, :created, :created)"),
                    {"id": dataset_id if backend == "postgresql" else dataset_id.hex, "tenant": tenant, "name": name,
                     "table": f"ds_{dataset_id.hex[:24]}", "created": created},
                )  # fmt: skip
        upgrade_database(url)
        with make_sessionmaker(engine)() as session:
            names = {d.id: (d.tenant_id, d.name) for d in session.scalars(select(Dataset))}
        assert len(names) == 5 and len(set(names.values())) == 5  # nothing lost, no name twice in a tenant
        first, second, other_tenant, fourth, other = (row[0] for row in made)
        assert names[first] == ("a", "flights") and names[other_tenant] == ("b", "flights")  # the oldest keeps it
        assert names[second] == ("a", f"flights ({second})") and names[fourth] == ("a", f"flights ({fourth})")
        assert names[other] == ("a", "other")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_failed_and_retrying_jobs_get_their_failure_group_when_groups_arrive(backend: str, tmp_path: Path) -> None:
    """Migration 0013 fingerprints the failures already in the ledger, as the worker would have."""
    with ExitStack() as stack:
        url = f"sqlite:///{tmp_path / 'f.db'}" if backend == "sqlite" else stack.enter_context(postgres_database())
        command.upgrade(alembic_config(url), "0012")
        engine = make_engine(url)
        stack.callback(engine.dispose)
        error = {"type": "TimeoutError", "message": "order 17 timed out", "where": "tasks/orders.py:run"}
        finished, updated = datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC)
        made = {status: uuid.uuid4() for status in ("failed", "retrying", "succeeded")}
        with engine.begin() as connection:
            for status, job_id in made.items():
                connection.execute(
                    text("INSERT INTO jobs (id, tenant_id, type, queue, priority, status, payload, attempt, "
                         "max_attempts, message_jobs, cancel_requested, error, finished_at, created_at, updated_at) "
                         "VALUES (:id, 'a', 'orders', 'default', 0, :status, '{}', 1, 3, 1, false, :error, :finished, "
                         ":updated, :updated)"),
                    {"id": job_id if backend == "postgresql" else job_id.hex, "status": status,
                     "error": json.dumps(error), "finished": None if status == "retrying" else finished,
                     "updated": updated},
                )  # fmt: skip
        upgrade_database(url)
        with make_sessionmaker(engine)() as session:
            jobs = {job.status: job for job in session.scalars(select(Job))}
        assert jobs["failed"].error_fingerprint == jobs["retrying"].error_fingerprint == fingerprint("orders", error)
        assert (jobs["failed"].failed_at, jobs["retrying"].failed_at) == (finished, updated)
        assert (jobs["succeeded"].error_fingerprint, jobs["succeeded"].failed_at) == (None, None)


def test_postgresql_vacuums_the_jobs_table_at_one_percent_of_it_and_the_downgrade_resets_that() -> None:
    """Migration 0018's storage parameters (the reconciler's tick walks dead index entries until a vacuum)."""
    with postgres_database() as url:
        upgrade_database(url)
        engine = make_engine(url)
        reloptions = text("SELECT reloptions FROM pg_class WHERE relname = 'jobs'")
        try:
            with engine.connect() as connection:
                options = set(connection.execute(reloptions).scalar_one())
            assert {"autovacuum_vacuum_scale_factor=0.01", "autovacuum_analyze_threshold=10000"} <= options
            command.downgrade(alembic_config(url), "0017")
            with engine.connect() as connection:
                assert connection.execute(reloptions).scalar_one() is None
        finally:
            engine.dispose()
