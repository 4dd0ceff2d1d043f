"""Job ids ordered by time (RFC 9562 version 7), as Python 3.14's `uuid.uuid7` makes them.

A random (version 4) id puts every new job, and every new version of its row on PostgreSQL, at a random place in the
primary key and in the job_id indexes of events and results: as the ledger grows, each insert and status change
touches another page of an index ever larger than the cache. A time-ordered id puts them beside the last ones. The 74
random bits keep an id unguessable; its first 48 bits are its creation's millisecond, which the job shows anyway."""

from __future__ import annotations

import os
import time
import uuid

_VERSION = 0x7 << 76  # bits 48-51 from the left
_VARIANT = 0x2 << 62  # bits 64-65 from the left: RFC 9562
_RANDOM = (1 << 80) - 1 & ~(0xF << 76) & ~(0x3 << 62)


def uuid7() -> uuid.UUID:
    milliseconds = time.time_ns() // 1_000_000
    random = int.from_bytes(os.urandom(10)) & _RANDOM
    return uuid.UUID(int=milliseconds << 80 | _VERSION | _VARIANT | random)
