"""Schedules on a real database (SQLite and PostgreSQL) with a frozen clock: firing, misfire policies, templating,
expiry, pause/resume, edits, one job per slot under concurrency."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import make_sessionmaker
from core.firing import fire_due_schedules
from core.jobs import claim_job
from core.models import Job, JobEvent, Schedule
from core.reconcile import reconcile
from core.registry import Registry
from core.schedule_ledger import LEDGER_SLOTS, fire_ledger
from core.schedules import (
    ScheduleDefinition,
    ScheduleNameTaken,
    create_schedule,
    list_runs,
    set_enabled,
    trigger_schedule,
    update_schedule,
)

QUEUES = ["default"]
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def make(session: Session, registry: Registry, now: datetime = T0, **fields: Any) -> Schedule:
    definition = ScheduleDefinition.model_validate(
        {"name": "s", "type": "echo", "payload": {"message": "slot {{ slot }}"}, "interval_seconds": 60} | fields
    )
    schedule = create_schedule(session, definition, registry=registry, known_queues=QUEUES, now=now)
    session.commit()
    return schedule


def tick(session: Session, registry: Registry, now: datetime) -> list[Job]:
    report = fire_due_schedules(session, registry=registry, known_queues=QUEUES, now=now)
    session.commit()
    return report.jobs


def slots(session: Session, schedule: Schedule) -> list[datetime]:
    query = select(Job.schedule_slot).where(Job.schedule_id == schedule.id).order_by(Job.schedule_slot)
    return [s for s in session.scalars(query) if s is not None]


def test_interval_schedule_fires_each_slot_once(session: Session, registry: Registry) -> None:
    schedule = make(session, registry)
    assert schedule.next_fire_at == T0 + timedelta(seconds=60)
    assert tick(session, registry, T0 + timedelta(seconds=59)) == []
    [job] = tick(session, registry, T0 + timedelta(seconds=60, milliseconds=300))
    assert job.schedule_slot == T0 + timedelta(seconds=60) and job.status == "queued"
    assert job.payload == {"message": "slot 2026-06-01T12:01:00+00:00"}
    assert tick(session, registry, T0 + timedelta(seconds=61)) == []  # the same slot again: nothing
    tick(session, registry, T0 + timedelta(seconds=120))
    assert slots(session, schedule) == [T0 + timedelta(seconds=60), T0 + timedelta(seconds=120)]
    session.refresh(schedule)
    assert schedule.next_fire_at == T0 + timedelta(seconds=180) and schedule.missed_slots == 0
    assert schedule.last_slot_at == T0 + timedelta(seconds=120)


def test_the_database_refuses_a_second_job_for_a_slot(session: Session, registry: Registry) -> None:
    schedule = make(session, registry)
    [job] = tick(session, registry, T0 + timedelta(seconds=60))
    twin = Job(type="echo", queue="default", status="queued", payload={}, max_attempts=1,
               schedule_id=schedule.id, schedule_slot=job.schedule_slot)  # fmt: skip
    session.add(twin)
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


def test_concurrent_ticks_make_one_job_per_slot(clean_db: Engine, registry: Registry) -> None:
    """Eight ticks at once (as from several beats and maintenance workers), over ten slots."""
    sessions = make_sessionmaker(clean_db)
    with sessions() as session:
        schedule = make(session, registry)
    errors: list[BaseException] = []

    def run_tick(now: datetime) -> None:
        try:
            with sessions() as session:
                tick(session, registry, now)
        except BaseException as exc:  # reported below
            errors.append(exc)

    for step in range(1, 11):
        now = T0 + timedelta(seconds=60 * step)
        threads = [threading.Thread(target=run_tick, args=(now,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    with sessions() as session:
        assert slots(session, schedule) == [T0 + timedelta(seconds=60 * s) for s in range(1, 11)]


@pytest.mark.parametrize(
    ("misfire", "catchup_limit", "expected_hours", "missed"),
    [
        ("skip", 100, [5], 5),  # only the latest missed slot
        ("all", 100, [0, 1, 2, 3, 4, 5], 0),  # every one
        ("all", 3, [3, 4, 5], 3),  # every one, up to the cap (the newest)
        ("none", 100, [], 6),  # none: the latest is 30 minutes late, beyond the 60 s grace
    ],
)
def test_misfire_policy_after_beat_was_down(
    session: Session, registry: Registry, misfire: str, catchup_limit: int, expected_hours: list[int], missed: int
) -> None:
    schedule = make(session, registry, interval_seconds=3600, start_at=T0, misfire=misfire, catchup_limit=catchup_limit)
    assert schedule.next_fire_at == T0
    tick(session, registry, T0 + timedelta(hours=5, minutes=30))  # beat was down from T0 to T0+5h30
    assert slots(session, schedule) == [T0 + timedelta(hours=h) for h in expected_hours]
    session.refresh(schedule)
    assert schedule.missed_slots == missed
    assert schedule.next_fire_at == T0 + timedelta(hours=6)


def test_none_policy_still_fires_a_slot_within_its_grace(session: Session, registry: Registry) -> None:
    schedule = make(session, registry, interval_seconds=3600, start_at=T0, misfire="none", misfire_grace_seconds=120)
    tick(session, registry, T0 + timedelta(seconds=90))
    assert slots(session, schedule) == [T0]


def test_expiry_by_policy(session: Session, registry: Registry) -> None:
    skip = make(session, registry, name="skip", interval_seconds=600)
    catch_all = make(session, registry, name="all", interval_seconds=600, misfire="all")
    explicit = make(session, registry, name="explicit", interval_seconds=600, expires_after_seconds=30)
    now = T0 + timedelta(seconds=600)
    jobs = {j.schedule_id: j for j in tick(session, registry, now)}
    assert jobs[skip.id].expires_at == now + timedelta(seconds=600)  # one period
    assert jobs[catch_all.id].expires_at is None  # `all` means run them, however late
    assert jobs[explicit.id].expires_at == now + timedelta(seconds=30)


def test_an_expired_job_is_cancelled_visibly_and_never_claimed(session: Session, registry: Registry) -> None:
    make(session, registry, expires_after_seconds=30)
    [job] = tick(session, registry, T0 + timedelta(seconds=60))
    late = T0 + timedelta(seconds=91)
    assert claim_job(session, job_id=job.id, worker="w", lease_seconds=30, now=late) is None
    report = reconcile(session, republish_after=60, backoff_cap=60, now=late)
    session.commit()
    assert report.expired == 1
    session.refresh(job)
    assert job.status == "cancelled" and job.error is not None and job.error["type"] == "Expired"
    kinds = session.scalars(select(JobEvent.kind).where(JobEvent.job_id == job.id).order_by(JobEvent.id))
    assert list(kinds) == ["queued", "cancelled"]


def test_templating_uses_the_schedule_zone(session: Session, registry: Registry) -> None:
    payload = {"message": "{{ slot_date }} {{ slot_time }} {{ slot_previous_date }} {{slot_utc}} {{ slot_unix }}"}
    make(session, registry, cron="30 0 * * *", interval_seconds=None, timezone="Europe/Berlin", payload=payload)
    [job] = tick(session, registry, datetime(2026, 6, 1, 23, 0, tzinfo=UTC))  # 00:30 CEST on June 1 = 22:30 UTC
    assert job.payload == {
        "message": "2026-06-02 00:30:00 2026-06-01 2026-06-01T22:30:00+00:00 1780353000",
    }


def test_frozen_clock_through_dst_nights_fires_once_per_slot(session: Session, registry: Registry) -> None:
    """Beat ticking every minute through both changes of 2026 in Berlin: each slot once, none in a gap lost."""
    zone = ZoneInfo("Europe/Berlin")
    expected: dict[str, list[str]] = {
        "30 2 * * *": ["03-29T03:00+0200", "10-25T02:30+0200"],
        "0 * * * *": ["03-29T00:00+0100", "03-29T01:00+0100", "03-29T03:00+0200", "03-29T04:00+0200",
                      "10-25T00:00+0200", "10-25T01:00+0200", "10-25T02:00+0200", "10-25T02:00+0100",
                      "10-25T03:00+0100", "10-25T04:00+0100"],
    }  # fmt: skip
    schedules = {expr: make(session, registry, now=datetime(2026, 3, 28, 23, 59, tzinfo=zone), name=f"s{i}",
                            cron=expr, interval_seconds=None, timezone="Europe/Berlin")
                 for i, expr in enumerate(expected)}  # fmt: skip
    for night, until in (
        ((2026, 3, 28, 23, 59), (2026, 3, 29, 4, 30)),
        ((2026, 10, 24, 23, 59), (2026, 10, 25, 4, 30)),
    ):
        now, end = datetime(*night, tzinfo=zone).astimezone(UTC), datetime(*until, tzinfo=zone).astimezone(UTC)
        if night[1] == 10:  # between the two nights nobody ran beat: catch up with `skip` without firing
            for schedule in schedules.values():
                set_enabled(session, schedule.id, False, now=now)
                set_enabled(session, schedule.id, True, now=now)
            session.commit()
        while now <= end:
            tick(session, registry, now)
            now += timedelta(minutes=1)
    for expression, schedule in schedules.items():
        fired = [s.astimezone(zone).strftime("%m-%dT%H:%M%z") for s in slots(session, schedule)]
        assert fired == expected[expression], expression


def test_paused_schedule_does_not_fire_and_resumes_from_now(session: Session, registry: Registry) -> None:
    schedule = make(session, registry)
    set_enabled(session, schedule.id, False, now=T0 + timedelta(seconds=30))
    session.commit()
    assert tick(session, registry, T0 + timedelta(minutes=10)) == []
    resumed = set_enabled(session, schedule.id, True, now=T0 + timedelta(minutes=10, seconds=30))
    session.commit()
    assert resumed.next_fire_at == T0 + timedelta(minutes=11)
    tick(session, registry, T0 + timedelta(minutes=11))
    assert slots(session, schedule) == [T0 + timedelta(minutes=11)]


def test_edits_take_effect_at_the_next_slot(session: Session, registry: Registry) -> None:
    schedule = make(session, registry)
    # a payload edit keeps the pending slot and uses the new payload there
    update_schedule(session, schedule.id, {"payload": {"message": "new"}}, registry=registry, known_queues=QUEUES,
                    now=T0 + timedelta(seconds=59))  # fmt: skip
    session.commit()
    [job] = tick(session, registry, T0 + timedelta(seconds=60))
    assert job.payload == {"message": "new"}
    # a cadence edit re-plans from now
    edited = update_schedule(session, schedule.id, {"interval_seconds": None, "cron": "0 13 * * *"}, registry=registry,
                             known_queues=QUEUES, now=T0 + timedelta(seconds=70))  # fmt: skip
    session.commit()
    assert edited.next_fire_at == datetime(2026, 6, 1, 13, 0, tzinfo=UTC)
    assert tick(session, registry, T0 + timedelta(minutes=2)) == []


def test_start_and_end_bound_the_slots(session: Session, registry: Registry) -> None:
    schedule = make(session, registry, start_at=T0 + timedelta(hours=1), end_at=T0 + timedelta(hours=1, minutes=2))
    assert schedule.next_fire_at == T0 + timedelta(hours=1)
    for minute in range(0, 5):
        tick(session, registry, T0 + timedelta(hours=1, minutes=minute))
    assert slots(session, schedule) == [T0 + timedelta(hours=1, minutes=m) for m in (0, 1, 2)]
    session.refresh(schedule)
    assert schedule.next_fire_at is None


def test_trigger_runs_now_and_leaves_the_slots_alone(session: Session, registry: Registry) -> None:
    schedule = make(session, registry)
    job = trigger_schedule(session, schedule.id, registry=registry, known_queues=QUEUES, now=T0 + timedelta(seconds=5))
    session.commit()
    assert job.schedule_id == schedule.id and job.schedule_slot == T0 + timedelta(seconds=5)
    kinds = session.scalars(select(JobEvent.kind).where(JobEvent.job_id == job.id).order_by(JobEvent.id))
    assert list(kinds) == ["queued", "triggered"]
    session.refresh(schedule)
    assert schedule.next_fire_at == T0 + timedelta(seconds=60)


def test_runs_are_newest_slot_first_and_paged(session: Session, registry: Registry) -> None:
    schedule = make(session, registry, interval_seconds=60, start_at=T0, misfire="all")
    tick(session, registry, T0 + timedelta(minutes=4))  # five slots in one catch-up, created at the same instant
    first, cursor = list_runs(session, schedule.id, limit=3, cursor=None)
    rest, end = list_runs(session, schedule.id, limit=3, cursor=cursor)
    assert [j.schedule_slot for j in first + rest] == [T0 + timedelta(minutes=m) for m in (4, 3, 2, 1, 0)]
    assert end is None


def test_names_are_unique(session: Session, registry: Registry) -> None:
    make(session, registry, name="nightly")
    with pytest.raises(ScheduleNameTaken):
        make(session, registry, name="nightly")
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Schedule)) == 1


def test_deleting_a_schedule_keeps_its_jobs(session: Session, registry: Registry) -> None:
    schedule = make(session, registry)
    [job] = tick(session, registry, T0 + timedelta(seconds=60))
    session.delete(schedule)
    session.commit()
    session.refresh(job)
    assert job.schedule_id is None and job.status == "queued"


def test_a_clock_jumping_back_makes_no_second_job(session: Session, registry: Registry) -> None:
    schedule = make(session, registry)
    tick(session, registry, T0 + timedelta(seconds=120))  # fires the slot at 12:02 (skip)
    for seconds in (60, 119, 120, 121):  # a maintenance worker whose clock runs behind, or was set back
        assert tick(session, registry, T0 + timedelta(seconds=seconds)) == []
    assert slots(session, schedule) == [T0 + timedelta(seconds=120)]


def test_the_fire_ledger_marks_fired_missed_expired_due_and_triggered_slots(
    session: Session, registry: Registry
) -> None:
    """Beat fires two slots, is down for three, fires the latest (skip: the two before are missed); a fired job
    expires unstarted; a trigger runs outside the slots; the slot after the last tick is due, the next ones upcoming."""
    schedule = make(session, registry, expires_after_seconds=30)
    minute = timedelta(seconds=60)
    for at in (minute, 2 * minute):  # fired and started in time
        [job] = tick(session, registry, T0 + at)
        assert claim_job(session, job_id=job.id, worker="w", lease_seconds=3600, now=T0 + at) is not None
        session.commit()
    [late] = tick(session, registry, T0 + 5 * minute)  # 3 and 4 were never fired
    expired_at = T0 + 5 * minute + timedelta(seconds=31)
    reconcile(session, republish_after=60, backoff_cap=60, now=expired_at)  # its job expires unstarted
    triggered = trigger_schedule(session, schedule.id, registry=registry, known_queues=QUEUES,
                                 now=T0 + 5 * minute + timedelta(seconds=40))  # fmt: skip
    session.commit()
    session.refresh(schedule)
    ledger = fire_ledger(session, schedule, now=T0 + 6 * minute + timedelta(seconds=5))
    assert [(r.slot - T0, r.outcome) for r in ledger] == [
        (9 * minute, "upcoming"),
        (8 * minute, "upcoming"),
        (7 * minute, "upcoming"),
        (6 * minute, "due"),  # no tick since it came
        (5 * minute + timedelta(seconds=40), "triggered"),
        (5 * minute, "expired"),
        (4 * minute, "missed"),
        (3 * minute, "missed"),
        (2 * minute, "fired"),
        (minute, "fired"),
    ]
    assert ledger[5].job is not None and ledger[5].job.id == late.id and ledger[4].job.id == triggered.id
    assert schedule.missed_slots == 2
    set_enabled(session, schedule.id, False)
    session.commit()
    paused = fire_ledger(session, schedule, now=T0 + 6 * minute + timedelta(seconds=5))
    assert [r.outcome for r in paused][:2] == ["missed", "triggered"]  # paused: not due, nothing upcoming


def test_the_fire_ledger_keeps_to_a_window_of_recent_slots(session: Session, registry: Registry) -> None:
    schedule = make(session, registry, interval_seconds=1)
    ledger = fire_ledger(session, schedule, now=T0 + timedelta(days=7))  # a week of 1-second slots, none fired
    missed = [r for r in ledger if r.outcome in ("missed", "due")]
    assert len(missed) == LEDGER_SLOTS and missed[0].slot == T0 + timedelta(days=7)
