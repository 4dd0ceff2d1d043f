"""Cron and interval cadences, DST included: every instant is computed from an explicit (frozen) `after`."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.cadence import Cron, Interval, InvalidCadence, upcoming


def local(slots: list[datetime], zone: str) -> list[str]:
    """Slots as local wall time with offset, e.g. 03-29T03:00+02:00."""
    return [s.astimezone(ZoneInfo(zone)).strftime("%m-%dT%H:%M%z") for s in slots]


def night_before(zone: str, year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, 23, 0, tzinfo=ZoneInfo(zone)) - timedelta(days=1)


# Spring forward: Europe/Berlin 2026-03-29 02:00 → 03:00; America/New_York 2026-03-08 02:00 → 03:00.
# Fall back:      Europe/Berlin 2026-10-25 03:00 → 02:00; America/New_York 2026-11-01 02:00 → 01:00.
CASES = [
    # a fixed time inside the skipped hour runs once, at the change
    ("Europe/Berlin", "30 2 * * *", (2026, 3, 29), 2, ["03-29T03:00+0200", "03-30T02:30+0200"]),
    ("America/New_York", "30 2 * * *", (2026, 3, 8), 2, ["03-08T03:00-0400", "03-09T02:30-0400"]),
    # hourly skips the hour that does not exist, nothing doubles
    ("Europe/Berlin", "0 * * * *", (2026, 3, 29), 4,
     ["03-29T00:00+0100", "03-29T01:00+0100", "03-29T03:00+0200", "03-29T04:00+0200"]),
    ("America/New_York", "0 * * * *", (2026, 3, 8), 4,
     ["03-08T00:00-0500", "03-08T01:00-0500", "03-08T03:00-0400", "03-08T04:00-0400"]),
    # a fixed time inside the repeated hour runs once (its first occurrence)
    ("Europe/Berlin", "30 2 * * *", (2026, 10, 25), 2, ["10-25T02:30+0200", "10-26T02:30+0100"]),
    ("America/New_York", "30 1 * * *", (2026, 11, 1), 2, ["11-01T01:30-0400", "11-02T01:30-0500"]),
    # hourly runs in both occurrences of the repeated hour: one hour apart in real time
    ("Europe/Berlin", "0 * * * *", (2026, 10, 25), 5,
     ["10-25T00:00+0200", "10-25T01:00+0200", "10-25T02:00+0200", "10-25T02:00+0100", "10-25T03:00+0100"]),
    ("America/New_York", "0 * * * *", (2026, 11, 1), 4,
     ["11-01T00:00-0400", "11-01T01:00-0400", "11-01T01:00-0500", "11-01T02:00-0500"]),
    # every 30 minutes through the repeated hour: both passes, in real-time order
    ("America/New_York", "*/30 * * * *", (2026, 11, 1), 7,
     ["10-31T23:30-0400", "11-01T00:00-0400", "11-01T00:30-0400", "11-01T01:00-0400", "11-01T01:30-0400",
      "11-01T01:00-0500", "11-01T01:30-0500"]),
    # a daily job outside the changed hours keeps its wall time on both sides
    ("Europe/Berlin", "0 9 * * *", (2026, 3, 29), 2, ["03-29T09:00+0200", "03-30T09:00+0200"]),
    ("America/New_York", "0 9 * * *", (2026, 11, 1), 2, ["11-01T09:00-0500", "11-02T09:00-0500"]),
]  # fmt: skip


@pytest.mark.parametrize(("zone", "expression", "day", "count", "expected"), CASES)
def test_cron_across_dst_changes(
    zone: str, expression: str, day: tuple[int, int, int], count: int, expected: list[str]
) -> None:
    slots = upcoming(Cron(expression, zone), night_before(zone, *day), count)
    assert local(slots, zone) == expected
    assert slots == sorted(set(slots)), "slots are strictly increasing instants"
    assert all(s.tzinfo is UTC for s in slots)


def test_hourly_is_one_real_hour_apart_through_both_changes() -> None:
    for day in ((2026, 3, 29), (2026, 10, 25)):
        slots = upcoming(Cron("0 * * * *", "Europe/Berlin"), night_before("Europe/Berlin", *day), 30)
        assert {b - a for a, b in itertools.pairwise(slots)} == {timedelta(hours=1)}


def test_next_after_is_strict_and_starts_inside_a_repeated_hour() -> None:
    cron = Cron("0 * * * *", "Europe/Berlin")
    first_two = datetime(2026, 10, 25, 0, 0, tzinfo=UTC)  # 02:00 CEST, the first 02:00
    assert cron.next_after(first_two) == datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # 02:00 CET, the second
    assert cron.next_after(first_two - timedelta(microseconds=1)) == first_two


def test_interval_slots_are_anchored() -> None:
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    every = Interval(90, anchor=anchor)
    assert every.next_after(anchor - timedelta(days=1)) == anchor
    assert every.next_after(anchor) == anchor + timedelta(seconds=90)
    assert every.next_after(anchor + timedelta(seconds=100)) == anchor + timedelta(seconds=180)
    # a DST change does not move an interval: it counts real seconds
    cross = Interval(3600, anchor=datetime(2026, 3, 29, 0, 0, tzinfo=UTC))
    assert upcoming(cross, cross.anchor, 3) == [cross.anchor + timedelta(hours=h) for h in (1, 2, 3)]


@pytest.mark.parametrize(
    "expression", ["", "* * * *", "0 25 * * *", "61 * * * *", "* * * * * *", "every day", "@never"]
)
def test_invalid_cron_is_refused_with_a_hint(expression: str) -> None:
    with pytest.raises(InvalidCadence, match="five fields"):
        Cron(expression)


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(InvalidCadence, match="IANA"):
        Cron("0 2 * * *", "Europe/Atlantis")
    with pytest.raises(InvalidCadence, match="IANA"):
        Cron("0 2 * * *", "../../etc/passwd")


def test_period_of_common_expressions() -> None:
    assert Cron("*/5 * * * *").period == timedelta(minutes=5)
    assert Cron("@daily").period == timedelta(days=1)
    assert Interval(7, anchor=datetime(2026, 1, 1, tzinfo=UTC)).period == timedelta(seconds=7)


def test_a_cron_that_never_fires_is_refused() -> None:
    with pytest.raises(InvalidCadence, match="never fires"):
        Cron("0 0 30 2 *")
