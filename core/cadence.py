"""When a schedule fires: a cron expression read in a time zone, or a fixed interval.

Cron slots are matched on the wall clock of the schedule's zone and mapped to instants with Vixie cron's DST rules:
- a wall time skipped by a spring-forward change fires at the change (once: `30 2 * * *` runs at 03:00 that night);
- a wall time repeated by a fall-back change fires at its first occurrence, and at the second one too only when the
  hour field is a wildcard (`0 * * * *` keeps firing hourly, `30 2 * * *` fires once).
croniter does the matching; it is fed naive wall-clock times so that the DST policy lives here, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from core.errors import ConveyorError

# Larger than any UTC offset change (the largest in use is 2 h): bounds the wall-clock search around an instant.
DST_SLACK = timedelta(hours=3)


class InvalidCadence(ConveyorError):
    slug, status, title = "invalid-schedule", 422, "Invalid schedule"


class Cadence(Protocol):
    def next_after(self, after: datetime) -> datetime:
        """The first slot strictly after `after` (aware), as an aware UTC datetime."""
        ...

    @property
    def period(self) -> timedelta:
        """The usual gap between two slots (for expiry defaults)."""
        ...


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidCadence(
            f"Unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin', 'America/New_York' or 'UTC'."
        ) from None


@dataclass(frozen=True)
class Interval:
    seconds: int
    anchor: datetime  # slots are anchor + k * seconds

    def next_after(self, after: datetime) -> datetime:
        anchor = self.anchor.astimezone(UTC)
        if after < anchor:
            return anchor
        elapsed = (after - anchor) // timedelta(seconds=self.seconds)
        return anchor + (elapsed + 1) * timedelta(seconds=self.seconds)

    @property
    def period(self) -> timedelta:
        return timedelta(seconds=self.seconds)


@dataclass(frozen=True)
class Cron:
    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        fields = self.expression.split()
        macro = len(fields) == 1 and fields[0].startswith("@")
        if not (macro or len(fields) == 5) or not croniter.is_valid(self.expression):
            raise InvalidCadence(
                f"Invalid cron expression {self.expression!r}: use five fields, minute hour day-of-month month "
                "day-of-week (e.g. '0 2 * * *' for 02:00 every day), or @hourly, @daily, @weekly, @monthly."
            )
        zone(self.timezone)
        try:
            croniter(self.expression, datetime(2000, 1, 1)).get_next(datetime)
        except CroniterBadDateError:
            raise InvalidCadence(f"The cron expression {self.expression!r} never fires (e.g. 30 February).") from None

    @property
    def _tz(self) -> ZoneInfo:
        return zone(self.timezone)

    @property
    def _hour_is_wildcard(self) -> bool:
        # Vixie's test: the hour field starts with '*' ('*', '*/2'); @hourly expands to '*' too.
        fields = self.expression.split()
        return croniter(self.expression).expanded[1] == ["*"] or (len(fields) == 5 and fields[1].startswith("*"))

    def next_after(self, after: datetime) -> datetime:
        tz = self._tz
        # Start at the earliest wall time that can map past `after`: its own, unless a DST change is near.
        offset = min((after + shift).astimezone(tz).utcoffset() or timedelta() for shift in (-DST_SLACK, DST_SLACK))
        start = after.astimezone(UTC).replace(tzinfo=None) + min(offset, after.astimezone(tz).utcoffset() or offset)
        walls = croniter(self.expression, start - timedelta(minutes=1))
        best: datetime | None = None
        while True:
            wall: datetime = walls.get_next(datetime)
            instants = self._instants(wall, tz)
            # A wall time's earliest instant never decreases as the wall time grows (gaps map to the change, repeats
            # keep their order), so the first candidate that starts after the best one ends the search.
            if best is not None and instants[0] > best:
                return best
            for instant in instants:
                if instant > after and (best is None or instant < best):
                    best = instant

    @property
    def period(self) -> timedelta:
        walls = croniter(self.expression, datetime(2001, 1, 1))
        first: datetime = walls.get_next(datetime)
        second: datetime = walls.get_next(datetime)
        return second - first

    def _instants(self, wall: datetime, tz: ZoneInfo) -> list[datetime]:
        """The instants a wall-clock match stands for: none is lost in a gap, a repeat fires once unless hourly."""
        first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
        if first == second:
            return [first]
        if first.astimezone(tz).replace(tzinfo=None) != wall:  # in a spring-forward gap: fire at the change
            return [_first_instant_at_or_after(wall, tz, low=min(first, second), high=max(first, second))]
        return [first, second] if self._hour_is_wildcard else [first]


def _first_instant_at_or_after(wall: datetime, tz: ZoneInfo, *, low: datetime, high: datetime) -> datetime:
    """Bisect (in whole seconds, as zone changes are) for the first instant whose wall clock reaches `wall`."""
    low_s, high_s = int(low.timestamp()), int(high.timestamp())
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if datetime.fromtimestamp(middle, tz).replace(tzinfo=None) >= wall:
            high_s = middle
        else:
            low_s = middle
    return datetime.fromtimestamp(high_s, UTC)


def upcoming(cadence: Cadence, after: datetime, count: int, *, end_at: datetime | None = None) -> list[datetime]:
    """The next `count` slots after `after`, stopping at `end_at`."""
    slots: list[datetime] = []
    slot = after
    while len(slots) < count:
        slot = cadence.next_after(slot)
        if end_at is not None and slot > end_at:
            break
        slots.append(slot)
    return slots
