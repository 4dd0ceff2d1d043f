"""POST /v1/jobs under concurrency: requests that arrive while another's commit is in flight share the next
transaction and messages (core/group_commit.py, ADR 0006), and each still gets its own answer."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from apiflask import APIFlask
from sqlalchemy import event, select
from werkzeug.test import TestResponse

from core.models import Job, JobEvent
from core.queue import Message, RecordingPublisher
from tests.core.test_group_commit import wait_until
from tests.support.keys import app_key, client_with


class HeldFirstPublish(RecordingPublisher):
    """Holds the first publish (after its commit) until released, so that the next requests queue behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.release = threading.Event()

    def publish(self, batch: Sequence[Message]) -> list[Any]:
        self.calls += 1
        if self.calls == 1:
            assert self.release.wait(10)
        return super().publish(batch)


@pytest.fixture
def publisher() -> RecordingPublisher:
    return HeldFirstPublish()


def post_while_the_first_is_held(app: APIFlask, publisher: HeldFirstPublish,
                                 later: list[tuple[dict[str, Any], dict[str, str]]]) -> list[TestResponse]:  # fmt: skip
    """One POST that holds its group, then `later` (body, headers) queued behind it; every response, in order."""
    groups = app.extensions["conveyor"].submit_groups
    token = app_key(app)

    def post(body: dict[str, Any], headers: dict[str, str]) -> TestResponse:
        return client_with(app, token).post("/v1/jobs", json=body, headers=headers)

    with ThreadPoolExecutor(len(later) + 1) as pool:
        first = pool.submit(post, {"type": "echo", "payload": {"message": "first"}}, {})
        wait_until(lambda: publisher.calls == 1)
        futures = []
        for body, headers in later:
            futures.append(pool.submit(post, body, headers))
            wait_until(lambda: groups.queued == len(futures) + 1)
        publisher.release.set()
        return [first.result(10), *(f.result(10) for f in futures)]


def test_requests_that_arrive_together_share_a_commit_and_a_message(app: APIFlask, publisher: HeldFirstPublish) -> None:
    later = [({"type": "echo", "payload": {"message": f"m{i}"}}, {}) for i in range(5)]
    responses = post_while_the_first_is_held(app, publisher, later)
    assert [r.status_code for r in responses] == [202] * 6
    assert [r.json["payload"]["message"] for r in responses] == ["first", *(f"m{i}" for i in range(5))]
    ids = [r.json["id"] for r in responses]
    assert len(set(ids)) == 6
    assert [len(m.wakeups) for m in publisher.messages] == [1, 5]
    assert [str(i) for i in publisher.messages[1].job_ids] == ids[1:]
    with app.extensions["conveyor"].sessions() as session:
        rows = {str(job.id): job for job in session.scalars(select(Job))}
        events = Counter(str(e.job_id) for e in session.scalars(select(JobEvent)))
    assert sorted(rows) == sorted(ids)
    assert [rows[i].message_jobs for i in ids] == [1, 5, 5, 5, 5, 5]
    assert {rows[i].status for i in ids} == {"queued"}
    assert all(events[i] == 1 for i in ids)  # each its own `queued` event


def test_one_group_keeps_each_requests_idempotency_and_errors(app: APIFlask, publisher: HeldFirstPublish) -> None:
    """The same key twice and once with another body, and an unknown type, in one group: one job for the key, the
    same body answered with it (200), the other body refused (422), the unknown type refused alone."""
    same = {"type": "echo", "payload": {"message": "a"}}
    other = {"type": "echo", "payload": {"message": "b"}}
    key = {"Idempotency-Key": "k-1"}
    later = [(same, key), (other, key), (same, key), ({"type": "nope", "payload": {}}, {}), (other, {})]
    first, *answers = post_while_the_first_is_held(app, publisher, later)
    assert first.status_code == 202
    assert [r.status_code for r in answers] == [202, 422, 200, 422, 202]
    assert answers[0].json["id"] == answers[2].json["id"]
    assert answers[1].json["type"].endswith(":idempotency-key-reused")
    assert answers[3].json["type"].endswith(":unknown-job-type")
    with app.extensions["conveyor"].sessions() as session:
        messages = sorted(j.payload["message"] for j in session.scalars(select(Job)))
    assert messages == ["a", "b", "first"]


def record_statements(app: APIFlask) -> list[tuple[str, bool]]:
    """Each statement the app's engine runs for jobs (its first two words), with whether its connection was in
    autocommit. The API keys' own statements (making a key, its lookup, its last-use stamp) are not the submit's."""
    seen: list[tuple[str, bool]] = []

    def before(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "api_keys" in statement or "audit_events" in statement:
            return
        seen.append((" ".join(statement.split()[:2]), bool(conn.connection.dbapi_connection.autocommit)))

    event.listen(app.extensions["conveyor"].engine, "before_cursor_execute", before)
    return seen


def test_plain_submits_on_postgresql_are_one_statement_in_autocommit(
    app: APIFlask, publisher: HeldFirstPublish, database_url: str
) -> None:
    """One round trip per group: jobs and events in one statement, no BEGIN and COMMIT; a keyed request (which looks
    its key up first) keeps a transaction."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has no DML in CTEs; its group is one transaction")
    seen = record_statements(app)
    responses = post_while_the_first_is_held(app, publisher, [({"type": "echo", "payload": {"message": f"m{i}"}}, {})
                                                              for i in range(5)])  # fmt: skip
    assert [r.status_code for r in responses] == [202] * 6
    # The tenant's first submit counts its unfinished jobs for the quota; within the next second, far from the
    # quota, this process's count serves (core/quotas.py: UsageCache). Then WITH new_jobs AS (INSERT INTO jobs …)
    # INSERT INTO job_events …: one statement per group.
    assert seen == [("SELECT coalesce((SELECT", True), ("WITH new_jobs", True), ("WITH new_jobs", True)]
    with app.extensions["conveyor"].sessions() as session:
        assert len(session.scalars(select(Job)).all()) == 6 and len(session.scalars(select(JobEvent)).all()) == 6
    seen.clear()
    keyed = client_with(app, app_key(app)).post("/v1/jobs", json={"type": "echo", "payload": {"message": "k"}},
                                   headers={"Idempotency-Key": "k-2"})  # fmt: skip
    assert keyed.status_code == 202
    assert seen and not any(autocommit for _, autocommit in seen)
