"""The generic executor: claim → run the handler under a heartbeat → record success, failure or cancellation."""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.context import JobCancelled, LeaseLost
from core.db import single_statement
from core.jobs import ClaimedJob, claim_job, complete_job, fail_attempt, mark_cancelled
from core.registry import JobSpec
from worker.context import WorkerJobContext
from worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)
TRACEBACK_LINES = 20


def error_info(exc: BaseException) -> dict[str, Any]:
    lines = traceback.format_exception(exc)
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:2000],
        "traceback": "".join(lines[-TRACEBACK_LINES:])[-8000:],
    }


def discard(session: Session) -> None:
    """Give up the handler's unit of work before recording the outcome in a fresh one (on SQLite this also
    releases the write lock the fresh session needs). A broken connection must not mask the real error."""
    with contextlib.suppress(SQLAlchemyError):
        session.rollback()


def execute_message(runtime: WorkerRuntime, spec: JobSpec, raw_job_ids: Sequence[str], hostname: str) -> str:
    """Run the jobs one message wakes (one, or several of a batch) one after another, each with its own claim,
    heartbeat and outcome. A job that raises does not stop the others; the first error is raised after the last job,
    so Celery and Flower see the message failed. Returns what happened (for logs and Flower)."""
    outcomes: Counter[str] = Counter()
    first_error: Exception | None = None
    for raw_job_id in raw_job_ids:
        try:
            outcomes[execute_job(runtime, spec, raw_job_id, hostname)] += 1
        except Exception as exc:
            outcomes["failed"] += 1
            first_error = first_error or exc
    if first_error is not None:
        raise first_error
    return ", ".join(f"{count} {outcome}" for outcome, count in outcomes.items())


def execute_job(runtime: WorkerRuntime, spec: JobSpec, raw_job_id: str, hostname: str) -> str:
    """Run one delivery of a job. Returns what happened (for logs); raises the handler's exception after
    recording it, so Celery and Flower see the failure too."""
    worker = f"{hostname}:{os.getpid()}"
    try:
        job_id = uuid.UUID(str(raw_job_id))
    except ValueError:
        log.error("message for %s carries a malformed job id %r; dropped", spec.name, raw_job_id)
        return "malformed"

    # One session on one pooled connection for the claim and the handler's unit of work.
    with runtime.job_session() as session:
        # 1. Claim: one conditional update. No row back means a duplicate or stale delivery.
        with single_statement(session), session.begin():
            claimed = claim_job(session, job_id=job_id, worker=worker, lease_seconds=runtime.settings.lease_seconds)
        if claimed is None:
            runtime.duplicate_deliveries += 1
            log.info("job %s not claimable (duplicate, stale or cancelled delivery); acked without running", job_id)
            return "skipped"
        return _run_claimed(runtime, spec, claimed, session, worker)


def _run_claimed(runtime: WorkerRuntime, spec: JobSpec, claimed: ClaimedJob, session: Session, worker: str) -> str:
    job_id = claimed.id
    # 2. Run under a heartbeat; 3. result and success in one transaction.
    try:
        ctx = WorkerJobContext(runtime, claimed, session, worker)
        with runtime.lease_keeper.keeping(ctx):
            payload = spec.payload.model_validate(claimed.payload)
            result = spec.handler(payload, ctx)
            ctx.check()
            data = spec.result.model_validate(result, from_attributes=True).model_dump(mode="json")
        # If the handler wrote through ctx.session, its work and the result commit together (single_statement then
        # leaves its transaction alone); else the completion is one statement.
        with single_statement(session):
            completed = complete_job(session, job_id=job_id, attempt=claimed.attempt, worker=worker, data=data)
            (session.commit if completed else session.rollback)()
        if completed:
            return "succeeded"
        log.warning("job %s attempt %s finished after losing its lease; result discarded", job_id, claimed.attempt)
        return "lease_lost"
    except JobCancelled:
        discard(session)
        with runtime.sessions() as fresh, fresh.begin():
            mark_cancelled(fresh, job_id=job_id, attempt=claimed.attempt, worker=worker)
        return "cancelled"
    except LeaseLost:
        log.warning("job %s attempt %s lost its lease; another attempt owns it", job_id, claimed.attempt)
        return "lease_lost"
    except Exception as exc:
        # 4. Failure: a fresh session (the handler's may be broken), retrying with backoff or failed.
        discard(session)
        retryable = isinstance(exc, spec.retry_on) and not isinstance(exc, ValidationError)
        with runtime.sessions() as fresh, fresh.begin():
            fail_attempt(
                fresh,
                job_id=job_id,
                attempt=claimed.attempt,
                worker=worker,
                error=error_info(exc),
                retryable=retryable,
                backoff=spec.retry_backoff,
                backoff_cap=runtime.settings.retry_backoff_max,
            )
        raise
