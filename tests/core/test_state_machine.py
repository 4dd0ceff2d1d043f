"""The whole transition table: every (from, to) pair is tried through the ledger's own operations on a real row;
exactly the pairs in TRANSITIONS move it."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import InvalidTransition
from core.jobs import (
    IllegalTransition,
    cancel_job,
    claim_job,
    complete_job,
    fail_attempt,
    mark_cancelled,
    move,
    retry_job,
)
from core.models import Job, JobEvent
from core.reconcile import reconcile
from core.status import TERMINAL, TRANSITIONS, JobStatus
from core.types import utcnow
from tests.core.factories import insert_job

S = JobStatus


def drive(session: Session, job: Job, target: JobStatus) -> None:
    """Ask the ledger to move `job` to `target` by the one operation that does so."""
    common = {"job_id": job.id, "attempt": job.attempt, "worker": "w"}
    error = {"type": "E", "message": "m"}
    try:
        if target is S.RUNNING:
            claim_job(session, job_id=job.id, worker="w", lease_seconds=30)
        elif target is S.SUCCEEDED:
            complete_job(session, data={}, **common)
        elif target is S.RETRYING:
            fail_attempt(session, error=error, retryable=True, backoff=1, backoff_cap=10, **common)
        elif target is S.FAILED:
            fail_attempt(session, error=error, retryable=False, backoff=1, backoff_cap=10, **common)
        elif target is S.CANCELLED:
            cancel_job(session, job.id)
            mark_cancelled(session, **common)
        elif target is S.QUEUED:
            if job.status == S.FAILED:
                retry_job(session, job.id)
            reconcile(session, republish_after=60, backoff_cap=10, now=utcnow() + timedelta(days=1))
        # SCHEDULED is only ever entered at submit: no operation reaches it.
    except InvalidTransition:
        session.rollback()
        return
    session.commit()


def test_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(JobStatus)
    assert all(not TRANSITIONS[s] for s in TERMINAL - {S.FAILED})
    assert TRANSITIONS[S.FAILED] == {S.QUEUED}


@pytest.mark.parametrize(("source", "target"), list(itertools.permutations(JobStatus, 2)))
def test_transition(session: Session, source: JobStatus, target: JobStatus) -> None:
    job = insert_job(session, source)
    drive(session, job, target)
    session.expire_all()
    status = session.scalar(select(Job.status).where(Job.id == job.id))
    if target in TRANSITIONS[source]:
        assert status == target.value
        kinds = session.scalars(select(JobEvent.kind).where(JobEvent.job_id == job.id)).all()
        assert target.value in kinds, "every transition writes a job_events row"
    else:
        assert status == source.value


def test_move_refuses_every_pair_the_table_lacks() -> None:
    """The loaded-row operations (fail_attempt, cancel_job, retry_job, the reconciler) change a status only through
    `move`: a pair outside the table raises instead of being written."""
    now = utcnow()
    for source, target in itertools.product(JobStatus, JobStatus):
        job = Job(status=source.value)
        if target in TRANSITIONS[source]:
            assert move(job, target, now) is source and job.status == target.value and job.updated_at == now
        else:
            with pytest.raises(IllegalTransition):
                move(job, target, now)
            assert job.status == source.value
