"""Per-tenant quotas on each backend: unfinished jobs (single and batch submits, schedule triggers and slots),
schedules and stored dataset bytes. Past a quota: 429 (413 for an upload) with the usage and the limit in the
problem body, and nothing stored. Usage counts only the caller's tenant."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from sqlalchemy import Engine, event, func, select, update

from api import create_app
from core.db import make_sessionmaker
from core.firing import fire_due_schedules
from core.jobs import cancel_job
from core.models import Job, Schedule, StoredFile
from core.queue import RecordingPublisher
from core.quotas import JobRoom, UsageCache, active_jobs, refresh_usage
from core.registry import load_registry
from core.settings import Settings
from core.types import utcnow
from tests.support.keys import admin_client

CSV = "carrier,delay\nAA,5\nUA,7\n"
ECHO = {"type": "echo", "payload": {"message": "hi"}}


@pytest.fixture
def quota_app(clean_db: Engine, database_url: str, tmp_path: Path) -> Iterator[APIFlask]:
    settings = Settings(data_dir=tmp_path, database_url=database_url, quota_active_jobs=3, quota_schedules=1,
                        quota_dataset_bytes=len(CSV) + 10)  # fmt: skip
    app = create_app(settings, publisher=RecordingPublisher())
    yield app
    app.extensions["conveyor"].engine.dispose()


def count(engine: Engine, model: Any, tenant: str = "acme") -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model).where(model.tenant_id == tenant)).scalar_one())


def assert_quota_problem(response: Any, status: int, quota: str, used: int, limit: int) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.json
    assert response.mimetype == "application/problem+json" and body["type"] == "urn:conveyor:problem:quota-exceeded"
    assert (body["quota"], body["used"], body["limit"]) == (quota, used, limit)
    assert f"CONVEYOR_QUOTA_{quota.upper()}" in body["detail"]


def test_submits_past_the_active_jobs_quota_are_429_and_store_nothing(quota_app: APIFlask, clean_db: Engine) -> None:
    acme, globex = admin_client(quota_app, "acme"), admin_client(quota_app, "globex")
    assert [acme.post("/v1/jobs", json=ECHO).status_code for _ in range(2)] == [202, 202]
    batch = acme.post("/v1/jobs:batch", json={"jobs": [ECHO, ECHO, ECHO]}).json
    assert [item["status"] for item in batch["items"]] == [202, 429, 429]  # room for one more
    assert batch["items"][1]["error"]["quota"] == "active_jobs" and batch["items"][1]["error"]["used"] == 3
    assert_quota_problem(acme.post("/v1/jobs", json=ECHO), 429, "active_jobs", used=3, limit=3)
    assert count(clean_db, Job) == 3
    assert globex.post("/v1/jobs", json=ECHO).status_code == 202  # a quota is per tenant
    assert acme.get("/v1/usage").json["active_jobs"] == {"used": 3, "limit": 3}


def test_finished_jobs_free_their_room_once_the_tick_counts(quota_app: APIFlask, clean_db: Engine) -> None:
    acme = admin_client(quota_app, "acme")
    ids = [acme.post("/v1/jobs", json=ECHO).json["id"] for _ in range(3)]
    sessions = make_sessionmaker(clean_db)

    def tick() -> None:
        """A tick well after the jobs so far were made (past the margin): they count in its number only."""
        with sessions() as session, session.begin():
            session.execute(update(Job).values(created_at=utcnow() - timedelta(minutes=5)))
            refresh_usage(session)

    tick()
    with sessions() as session:
        cancel_job(session, uuid.UUID(ids[0]), tenant_id="acme")
        session.commit()
        assert active_jobs(session, "acme") == 3  # until the next tick (an overcount, never an undercount)
    assert acme.post("/v1/jobs", json=ECHO).status_code == 429
    tick()
    assert acme.get("/v1/usage").json["active_jobs"]["used"] == 2
    assert acme.post("/v1/jobs", json=ECHO).status_code == 202
    assert acme.get("/v1/usage").json["active_jobs"]["used"] == 3  # the tick's 2, and one made since


def test_a_ticks_count_plus_newer_jobs_is_exact_with_no_finished_ones(quota_app: APIFlask, clean_db: Engine) -> None:
    """The two parts do not double-count a job: one made before the tick (past the margin) counts in the tick's
    number only, one made after it in the newer ones only."""
    acme = admin_client(quota_app, "acme")
    acme.post("/v1/jobs", json=ECHO)
    acme.post("/v1/jobs", json=ECHO)
    sessions = make_sessionmaker(clean_db)
    with sessions() as session, session.begin():
        session.execute(update(Job).values(created_at=utcnow() - timedelta(minutes=5)))
        assert refresh_usage(session) == 1
    acme.post("/v1/jobs", json=ECHO)
    with sessions() as session:
        assert active_jobs(session, "acme") == 3 and active_jobs(session, "nobody") == 0


def test_triggers_and_slots_past_the_quota_are_refused_visibly(quota_app: APIFlask, clean_db: Engine) -> None:
    acme = admin_client(quota_app, "acme")
    schedule = acme.post("/v1/schedules", json={**ECHO, "name": "often", "interval_seconds": 60}).json
    for _ in range(3):
        acme.post("/v1/jobs", json=ECHO)
    assert_quota_problem(acme.post(f"/v1/schedules/{schedule['id']}/trigger"), 429, "active_jobs", used=3, limit=3)
    sessions = make_sessionmaker(clean_db)
    with sessions() as session:
        report = fire_due_schedules(session, registry=load_registry(), known_queues=["default"],
                                    now=utcnow() + timedelta(seconds=61), active_jobs_limit=3)  # fmt: skip
        session.commit()
        assert report.jobs == [] and report.errors == 1
        stored = session.get_one(Schedule, uuid.UUID(schedule["id"]))
        assert "CONVEYOR_QUOTA_ACTIVE_JOBS" in (stored.last_error or "") and stored.missed_slots == 1
    assert count(clean_db, Job) == 3


def test_a_schedule_past_the_quota_is_429_and_not_stored(quota_app: APIFlask, clean_db: Engine) -> None:
    acme = admin_client(quota_app, "acme")
    assert acme.post("/v1/schedules", json={**ECHO, "name": "a", "cron": "0 2 * * *"}).status_code == 201
    refused = acme.post("/v1/schedules", json={**ECHO, "name": "b", "cron": "0 3 * * *"})
    assert_quota_problem(refused, 429, "schedules", used=1, limit=1)
    assert count(clean_db, Schedule) == 1
    assert admin_client(quota_app, "globex").post("/v1/schedules", json={**ECHO, "name": "a", "cron": "0 2 * * *"})\
        .status_code == 201  # fmt: skip


@pytest.mark.parametrize("how", ["raw", "multipart"])
def test_an_upload_past_the_bytes_quota_is_413_and_leaves_nothing(
    quota_app: APIFlask, clean_db: Engine, tmp_path: Path, how: str
) -> None:
    acme = admin_client(quota_app, "acme")
    assert acme.post("/v1/datasets?name=first", data=CSV, content_type="text/csv").status_code == 202
    spooled = set((tmp_path / "files").iterdir())
    if how == "raw":  # refused on its Content-Length, before a byte is spooled
        refused = acme.post("/v1/datasets?name=second", data=CSV, content_type="text/csv")
    else:  # the file's size is known once spooled
        refused = acme.post("/v1/datasets", data={"file": (__import__("io").BytesIO(CSV.encode()), "second.csv")},
                            content_type="multipart/form-data")  # fmt: skip
    assert_quota_problem(refused, 413, "dataset_bytes", used=len(CSV), limit=len(CSV) + 10)
    assert refused.json["requested"] >= len(CSV)
    assert count(clean_db, StoredFile) == 1 and set((tmp_path / "files").iterdir()) == spooled
    assert [d["name"] for d in acme.get("/v1/datasets").json["items"]] == ["first"]
    usage = acme.get("/v1/usage").json
    assert usage["dataset_bytes"] == {"used": len(CSV), "limit": len(CSV) + 10}
    assert usage["schedules"] == {"used": 0, "limit": 1}


def test_no_limit_is_shown_as_null(clean_db: Engine, database_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url, quota_active_jobs=0, quota_schedules=0,
                        quota_dataset_bytes=0)  # fmt: skip
    app = create_app(settings, publisher=RecordingPublisher())
    usage = admin_client(app, "acme").get("/v1/usage").json
    assert usage == {"tenant_id": "acme", "active_jobs": {"used": 0, "limit": None},
                     "schedules": {"used": 0, "limit": None}, "dataset_bytes": {"used": 0, "limit": None}}  # fmt: skip
    app.extensions["conveyor"].engine.dispose()


def test_a_process_counts_again_only_near_the_limit(clean_db: Engine) -> None:
    """Far from its quota a tenant's submits reuse this process's count for a second; within a tenth of it, every
    submit counts afresh, and a cached room that runs low mid-batch is counted again."""
    counts: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "tenant_usage" in statement:
            counts.append(statement)

    event.listen(clean_db, "before_cursor_execute", record)
    cache = UsageCache(seconds=60)
    sessions = make_sessionmaker(clean_db)
    with sessions() as session:
        assert JobRoom(session, 100, cache).take("acme") is None
        assert len(counts) == 1
        room = JobRoom(session, 100, cache)
        assert all(room.take("acme") is None for _ in range(89)) and len(counts) == 1  # cached: 90 used now
        assert room.take("acme") is None and len(counts) == 2  # the room ran low: counted (nothing is inserted)
        cache.store("acme", 95)
        assert JobRoom(session, 100, cache).take("acme") is None and len(counts) == 3  # near the limit: counts
        cache.store("acme", 100)
        assert JobRoom(session, 100, cache).take("acme") is None  # the database's count (0) wins over the cache's
        assert len(counts) == 4
    event.remove(clean_db, "before_cursor_execute", record)
