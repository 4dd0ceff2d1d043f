"""Job ids: UUID version 7 (RFC 9562), ordered by the millisecond they were made in, random after it."""

from __future__ import annotations

import time
import uuid

from core.ids import uuid7


def test_an_id_is_a_version_7_uuid_with_its_millisecond_first() -> None:
    before = time.time_ns() // 1_000_000
    made = uuid7()
    after = time.time_ns() // 1_000_000
    assert (made.version, made.variant) == (7, uuid.RFC_4122)
    assert before <= made.int >> 80 <= after
    assert uuid.UUID(str(made)) == made  # its text form parses back, as the API and the database take it


def test_ids_sort_by_time_and_never_repeat() -> None:
    first = [uuid7() for _ in range(1000)]
    time.sleep(0.002)
    later = [uuid7() for _ in range(1000)]
    assert max(first, key=lambda u: u.int >> 80).int >> 80 < min(later, key=lambda u: u.int >> 80).int >> 80
    assert max(u.int for u in first) < min(u.int for u in later)  # a later millisecond sorts after, in the index too
    assert len({*first, *later}) == 2000
    # the 74 random bits differ within a millisecond: the last 8 hex digits (the console's short id) too (for 100
    # ids, a one-in-a-million chance that two of 32 random bits meet)
    assert len({str(u)[-8:] for u in first[:100]}) == 100
