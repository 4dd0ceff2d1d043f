"""A message's jobs run one after another, each success claiming the next job in its own unit of work (one
statement on PostgreSQL, one transaction on SQLite): the ledger stays exactly what separate claims would write."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import Engine, event, insert, select, update
from sqlalchemy.orm import Session

from core.context import JobContext
from core.models import Job, JobEvent
from core.queue import make_celery
from core.registry import JobSpec, Registry
from core.settings import Settings
from core.submit import JobRequest, submit_jobs
from worker.executor import Delivery, execute_message
from worker.runtime import WorkerRuntime


class Step(BaseModel):
    name: str


Handler = Callable[[Step, JobContext], Step]


@pytest.fixture
def run_message(
    session: Session, clean_db: Engine, database_url: str, tmp_path: Path
) -> Iterator[Callable[[Handler, list[str]], tuple[str, list[uuid.UUID], list[str]]]]:
    """Submit one job per name, run them as one message through the executor on a real database; returns what the
    executor said, the job ids, and the statements its engine ran (and where each transaction began)."""
    runtimes: list[WorkerRuntime] = []

    def run(handler: Handler, names: list[str]) -> tuple[str, list[uuid.UUID], list[str]]:
        spec = JobSpec(name="step", payload=Step, result=Step, handler=handler, max_attempts=1)
        registry = Registry([spec])
        requests = [JobRequest(type="step", payload={"name": name}) for name in names]
        outcomes = submit_jobs(session, registry=registry, known_queues=["default"], requests=requests).outcomes
        session.commit()
        settings = Settings(data_dir=tmp_path, database_url=database_url)
        runtime = WorkerRuntime(settings, registry, make_celery(settings, name="test"))
        runtimes.append(runtime)
        statements: list[str] = []
        event.listen(runtime.job_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        event.listen(runtime.job_engine, "begin", lambda _conn: statements.append("(transaction begins)"))
        ids = [o.job.id for o in outcomes if o.job is not None]
        outcome = execute_message(runtime, spec, [str(i) for i in ids], Delivery("test"))
        said = f"{outcome}; first error {outcome.error}" if outcome.error else str(outcome)
        return said, ids, statements

    yield run
    for runtime in runtimes:
        runtime.close()


def kinds(session: Session, job_id: uuid.UUID) -> list[str]:
    query = select(JobEvent.kind).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
    return list(session.scalars(query.execution_options(populate_existing=True)))


def statuses(session: Session, ids: list[uuid.UUID]) -> list[str]:
    rows = {j.id: j.status for j in session.scalars(select(Job).execution_options(populate_existing=True))}
    return [rows[i] for i in ids]


def echo(payload: Step, _ctx: JobContext) -> Step:
    return payload


def test_each_success_claims_the_next_job_in_its_own_unit_of_work(
    session: Session, run_message: Any, database_url: str
) -> None:
    said, ids, statements = run_message(echo, ["a", "b", "c", "d"])
    assert said == "4 succeeded"
    assert statuses(session, ids) == ["succeeded"] * 4
    for job_id in ids:
        assert kinds(session, job_id) == ["queued", "running", "succeeded"]
    # Units of work: the first claim, three completions that claim the next job, the last completion; separate
    # claims would be 8. PostgreSQL runs each as one statement in autocommit, SQLite as one transaction.
    if database_url.startswith("sqlite"):
        units = [s for s in statements if s == "(transaction begins)"]
    else:
        units = [s for s in statements if s != "(transaction begins)"]
    assert len(units) == 5, statements


def test_a_job_that_is_not_claimable_is_skipped_and_the_chain_goes_on(
    session: Session, run_message: Any, clean_db: Engine
) -> None:
    def cancel_the_next(payload: Step, ctx: JobContext) -> Step:
        if payload.name == "a":  # the client cancels b while a runs: a's completion must not claim it
            with clean_db.begin() as conn:
                conn.execute(update(Job).where(Job.id != ctx.job_id, Job.status == "queued")
                             .where(Job.payload["name"].as_string() == "b").values(status="cancelled"))  # fmt: skip
        return payload

    said, ids, _ = run_message(cancel_the_next, ["a", "b", "c"])
    assert said == "2 succeeded, 1 skipped"
    assert statuses(session, ids) == ["succeeded", "cancelled", "succeeded"]
    assert kinds(session, ids[1]) == ["queued"]
    assert kinds(session, ids[2]) == ["queued", "running", "succeeded"]


def test_a_failed_job_claims_nothing_and_the_next_is_claimed_on_its_own(session: Session, run_message: Any) -> None:
    def fail_b(payload: Step, _ctx: JobContext) -> Step:
        if payload.name == "b":
            raise RuntimeError("b breaks")
        return payload

    said, ids, _ = run_message(fail_b, ["a", "b", "c"])
    assert said == "2 succeeded, 1 failed; first error b breaks"
    assert statuses(session, ids) == ["succeeded", "failed", "succeeded"]
    assert kinds(session, ids[1]) == ["queued", "running", "failed"]
    assert kinds(session, ids[2]) == ["queued", "running", "succeeded"]


def test_a_lost_lease_rolls_back_the_handlers_writes_and_the_claim_ahead(
    session: Session, run_message: Any, clean_db: Engine
) -> None:
    """a's attempt is taken over while it runs, and its handler then writes through ctx.session (so its
    completion and b's claim share that transaction): nothing of the transaction commits, and b, claimed on its own
    afterwards, runs exactly once."""

    def note_then_lose(payload: Step, ctx: JobContext) -> Step:
        if payload.name == "a":
            with clean_db.begin() as conn:  # another attempt takes a over (as the reconciler would after expiry)
                conn.execute(update(Job).where(Job.id == ctx.job_id).values(attempt=2))
            ctx.session.execute(insert(JobEvent).values(job_id=ctx.job_id, kind="note", attempt=1))
        return payload

    said, ids, _ = run_message(note_then_lose, ["a", "b"])
    assert said == "1 lease_lost, 1 succeeded"
    assert statuses(session, ids) == ["running", "succeeded"]
    assert kinds(session, ids[0]) == ["queued", "running"]  # no note, no success
    assert kinds(session, ids[1]) == ["queued", "running", "succeeded"]
