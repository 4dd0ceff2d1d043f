"""How wake-ups become broker messages: a batch's jobs share messages by type, queue and priority."""

from __future__ import annotations

import uuid

from core.queue import Wakeup, messages


def wakeup(job_type: str = "echo", priority: int = 0, per_message: int = 3, limit: float | None = 60.0) -> Wakeup:
    return Wakeup(uuid.uuid4(), job_type, "default", priority, per_message, limit)


def test_jobs_of_one_type_queue_and_priority_share_messages_in_submit_order() -> None:
    echo = [wakeup() for _ in range(7)]
    urgent = [wakeup(priority=9) for _ in range(2)]
    sleep = wakeup("sleep")
    ordered = [echo[0], urgent[0], echo[1], sleep, echo[2], echo[3], urgent[1], echo[4], echo[5], echo[6]]
    sent = messages(ordered)
    assert [m.job_ids for m in sent] == [
        [echo[0].job_id, echo[1].job_id, echo[2].job_id],
        [urgent[0].job_id, urgent[1].job_id],
        [sleep.job_id],
        [echo[3].job_id, echo[4].job_id, echo[5].job_id],
        [echo[6].job_id],
    ]
    assert [m.time_limit for m in sent] == [180.0, 120.0, 60.0, 180.0, 60.0]  # each job keeps its own allowance


def test_one_job_per_message_unless_the_wakeups_allow_sharing() -> None:
    singles = [wakeup(per_message=1) for _ in range(3)]
    assert [len(m.wakeups) for m in messages(singles)] == [1, 1, 1]
    assert messages([wakeup(limit=None), wakeup(limit=None)])[0].time_limit is None


def test_a_lone_wakeup_among_shared_ones_is_joined_by_none() -> None:
    """A retry (or a type with a soft time limit) has its own message; the jobs after it share one without it."""
    first, retry, second = wakeup(), wakeup(per_message=1), wakeup()
    assert [m.job_ids for m in messages([first, retry, second])] == [
        [first.job_id, second.job_id], [retry.job_id]]  # fmt: skip


def test_a_message_names_the_request_id_its_jobs_share_and_none_when_they_differ() -> None:
    """Concurrent POSTs share messages (their group commit's): the header is left out then, and the worker logs each
    job with the request id of its own row once it has claimed it."""
    from core.queue import REQUEST_ID_HEADER

    def of(request_id: str | None) -> Wakeup:
        return Wakeup(uuid.uuid4(), "echo", "default", 0, 3, request_id=request_id)

    alone, shared, mixed, unknown = messages([of("a")]), messages([of("b"), of("b")]), messages([of("c"), of("d")]), \
        messages([of(None)])  # fmt: skip
    assert [m.headers for m in (*alone, *shared, *mixed, *unknown)] == [
        {REQUEST_ID_HEADER: "a"}, {REQUEST_ID_HEADER: "b"}, {}, {},
    ]  # fmt: skip
