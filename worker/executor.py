"""The generic executor: claim → run the handler under a heartbeat → record success, failure or cancellation."""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from core import logs, metrics
from core.after_commit import publish_after_commit
from core.context import JobCancelled, LeaseLost
from core.jobs import (
    ClaimedJob,
    claim_job,
    complete_and_claim,
    complete_counted,
    complete_job,
    fail_attempt,
    mark_cancelled,
    workflow_job_finished,
)
from core.registry import JobSpec
from core.status import JobStatus
from core.submit import JobRequest, submit_jobs
from core.types import utcnow
from worker.context import WorkerJobContext
from worker.runtime import WorkerRuntime
from worker.unit_of_work import JobUnitOfWork

log = logging.getLogger(__name__)
TRACEBACK_FRAMES = 20
WORKER_PACKAGE = Path(__file__).resolve().parent


def error_info(exc: BaseException, handler: Callable[..., Any] | None = None) -> dict[str, Any]:
    """What a failed attempt records, and its API clients see: the error's type and message, and a traceback of the
    handler's frames (the executor's left out), each file as a path inside its package, so nothing of this host's
    layout reaches a client. The full traceback is in the worker's log line of the failure.

    `where` names the frame that raised, as `path:function`: the innermost one in the handler's own file when there
    is one (an error raised inside a library the handler called is grouped by the handler's call), else the
    innermost of all. It is part of the failure's fingerprint (core/failures.py)."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if not _in_worker(frame.filename)]
    shown = traceback.StackSummary.from_list(
        [(_inside_package(f.filename), f.lineno or 0, f.name, f.line) for f in frames[-TRACEBACK_FRAMES:]]
    )
    summary = "".join(traceback.format_exception_only(exc)).strip()
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:2000],
        "traceback": ("Traceback (most recent call last):\n" + "".join(shown.format()) + summary)[-8000:],
        "where": _raised_in(frames, handler),
    }


def _raised_in(frames: list[traceback.FrameSummary], handler: Callable[..., Any] | None) -> str | None:
    code = getattr(handler, "__code__", None)
    own = [f for f in frames if code is not None and f.filename == code.co_filename]
    frame = (own or frames)[-1] if own or frames else None
    return None if frame is None else f"{_inside_package(frame.filename)}:{frame.name}"


def _in_worker(filename: str) -> bool:
    return Path(filename).resolve().is_relative_to(WORKER_PACKAGE)


def _inside_package(filename: str) -> str:
    """The file as a path from the import root it was loaded from (tasks/fail.py, pydantic/main.py)."""
    path = Path(filename).resolve()
    roots = [Path(entry).resolve() for entry in sys.path if entry]
    found = [root for root in roots if path.is_relative_to(root)]
    return str(path.relative_to(max(found, key=lambda root: len(root.parts)))) if found else path.name


@dataclass(frozen=True)
class ClaimAhead:
    """The claim of a message's next job, made in the same statement (PostgreSQL) or transaction (SQLite) as the
    previous job's completion; `claimed` None means that job was not claimable (a duplicate or stale delivery)."""

    job_id: uuid.UUID
    claimed: ClaimedJob | None


@dataclass(frozen=True)
class Delivery:
    """Where a message came from: the worker process that took it, its queue, and the id of the API request that
    submitted its jobs when the message carries one (core.queue.REQUEST_ID_HEADER), for the log lines."""

    hostname: str
    queue: str | None = None
    request_id: str | None = None


@dataclass
class MessageOutcome:
    """What a message's jobs came to: counts by outcome, and the first error a job raised (reported, not raised:
    the Celery task decides what Celery and Flower are told, worker/factory.py)."""

    counts: Counter[str] = field(default_factory=Counter)
    error: Exception | None = None
    runs_again: bool = False  # the job of `error` runs again (retrying, or not recorded at all)

    @property
    def all_cancelled(self) -> bool:
        return bool(self.counts) and set(self.counts) == {"cancelled"}

    def __str__(self) -> str:
        return ", ".join(f"{count} {outcome}" for outcome, count in self.counts.items())


class AttemptFailed(Exception):
    """A handler raised and its attempt is recorded: `status` retrying (it runs again) or failed (for good)."""

    def __init__(self, error: Exception, status: JobStatus | None) -> None:
        super().__init__(str(error))
        self.error, self.status = error, status


def execute_message(
    runtime: WorkerRuntime, spec: JobSpec, raw_job_ids: Sequence[str], delivery: Delivery
) -> MessageOutcome:
    """Run the jobs one message wakes (one, or several of a batch) one after another, each with its own claim,
    heartbeat and outcome; a success also claims the next job in its unit of work. A job that raises does not stop
    the others. Every line logged meanwhile carries the job's context (core/logs.py)."""
    outcome = MessageOutcome()
    failed_job: uuid.UUID | None = None
    worker = f"{delivery.hostname}:{os.getpid()}"
    # Bound until the next message (not unwound at the end): Celery's own line about a failed message, its
    # traceback, comes after this function returns.
    logs.clear()
    logs.bind(type=spec.name, queue=delivery.queue, worker=worker, request_id=delivery.request_id)
    job_ids = []
    for raw_job_id in raw_job_ids:
        job_id = parse_job_id(spec, raw_job_id)
        if job_id is None:
            outcome.counts["malformed"] += 1
        else:
            job_ids.append(job_id)
    ahead: ClaimAhead | None = None
    for index, job_id in enumerate(job_ids):
        next_job_id = job_ids[index + 1] if index + 1 < len(job_ids) else None
        try:
            with logs.bound(job_id=str(job_id)):
                result, ahead = _deliver(runtime, spec, job_id, worker, ahead=ahead, next_job_id=next_job_id)
            outcome.counts[result] += 1
        except Exception as exc:  # the attempt's failure, or one before it was recorded (e.g. the database)
            ahead = None
            attempt = exc if isinstance(exc, AttemptFailed) else None
            recorded = attempt.status if attempt is not None else None
            # recorded: retrying or failed; None: another attempt owns the job, or nothing was recorded (the job
            # is still queued or running, and the reconciler gives it another message)
            outcome.counts[recorded.value if recorded else "lease_lost" if attempt else "error"] += 1
            if outcome.error is None:
                failed_job = job_id
                outcome.error = attempt.error if attempt is not None else exc
                outcome.runs_again = recorded is not JobStatus.FAILED
    if failed_job is not None:
        logs.bind(job_id=str(failed_job))
    return outcome


def parse_job_id(spec: JobSpec, raw_job_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(raw_job_id))
    except ValueError:
        log.error("message for %s carries a malformed job id %r; dropped", spec.name, raw_job_id)
        return None


def _deliver(
    runtime: WorkerRuntime,
    spec: JobSpec,
    job_id: uuid.UUID,
    worker: str,
    *,
    ahead: ClaimAhead | None,
    next_job_id: uuid.UUID | None,
) -> tuple[str, ClaimAhead | None]:
    """One job: its claim (or the one made ahead), the handler, the outcome; with the next job's claim when the
    outcome is a success and there is a next job."""
    with runtime.job_unit() as unit:  # the claim, the handler's work and the completion: worker/unit_of_work.py
        if ahead is not None and ahead.job_id == job_id:
            claimed = ahead.claimed
        else:  # 1. Claim: one conditional update. No row back means a duplicate or stale delivery.
            with unit.step() as session:
                claimed = claim_job(session, job_id=job_id, worker=worker, lease_seconds=runtime.settings.lease_seconds)
        if claimed is None:
            runtime.duplicate_deliveries += 1
            log.info("job %s not claimable (duplicate, stale or cancelled delivery); acked without running", job_id)
            return "skipped", None
        # The row's request id: a retry's or a re-published job's message carries none.
        with logs.bound(attempt=claimed.attempt, queue=claimed.queue, tenant=claimed.tenant_id,
                        request_id=claimed.request_id):  # fmt: skip
            return _run_claimed(runtime, spec, claimed, unit, worker, next_job_id)


def _run_claimed(
    runtime: WorkerRuntime,
    spec: JobSpec,
    claimed: ClaimedJob,
    unit: JobUnitOfWork,
    worker: str,
    next_job_id: uuid.UUID | None,
) -> tuple[str, ClaimAhead | None]:
    job_id = claimed.id
    log.info("job %s started, attempt %s of %s", job_id, claimed.attempt, claimed.max_attempts)
    # 2. Run under a heartbeat; 3. result and success in one transaction.
    started = time.monotonic()
    try:
        ctx = WorkerJobContext(runtime, claimed, unit, worker)
        try:
            with runtime.lease_keeper.keeping(ctx):
                payload = spec.payload.model_validate(claimed.payload)
                result = spec.handler(payload, ctx)
                ctx.check()
                data = spec.result.model_validate(result, from_attributes=True).model_dump(mode="json")
        finally:
            metrics.RUN_SECONDS.labels(claimed.type).observe(time.monotonic() - started)
        completed, ahead = _complete(runtime, unit, claimed, worker, data, next_job_id, ctx.children)
        if completed:
            log.info("job %s succeeded", job_id, extra={"duration_ms": _ms_since(started)})
            return "succeeded", ahead
        log.warning("job %s attempt %s finished after losing its lease; result discarded", job_id, claimed.attempt)
        return "lease_lost", ahead
    except JobCancelled:
        unit.discard()
        with runtime.sessions() as fresh, fresh.begin():
            mark_cancelled(fresh, job_id=job_id, attempt=claimed.attempt, worker=worker)
        log.info("job %s cancelled while running", job_id, extra={"duration_ms": _ms_since(started)})
        return "cancelled", None
    except LeaseLost:
        log.warning("job %s attempt %s lost its lease; another attempt owns it", job_id, claimed.attempt)
        return "lease_lost", None
    except Exception as exc:
        # 4. Failure: a fresh session (the handler's may be broken), retrying with backoff or failed.
        unit.discard()
        retryable = isinstance(exc, spec.retry_on) and not isinstance(exc, ValidationError)
        error = error_info(exc, spec.handler)
        with runtime.sessions() as fresh, fresh.begin():
            status = fail_attempt(
                fresh,
                job_id=job_id,
                attempt=claimed.attempt,
                worker=worker,
                error=error,
                retryable=retryable,
                backoff=spec.retry_backoff,
                backoff_cap=runtime.settings.retry_backoff_max,
            )
        log.warning("job %s attempt %s raised %s: %s; now %s", job_id, claimed.attempt, error["type"],
                    error["message"], status.value if status is not None else "another attempt's",
                    exc_info=exc, extra={"duration_ms": _ms_since(started), "error_type": error["type"],
                                         "status": status.value if status is not None else None})  # fmt: skip
        raise AttemptFailed(exc, status) from exc


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)


def _complete(
    runtime: WorkerRuntime,
    unit: JobUnitOfWork,
    claimed: ClaimedJob,
    worker: str,
    data: dict[str, Any],
    next_job_id: uuid.UUID | None,
    children: Sequence[JobRequest] = (),
) -> tuple[bool, ClaimAhead | None]:
    """Record the success, claiming the next job in the same unit of work when there is one. If the handler wrote
    through ctx.session, its work, the result (and the claim) commit together; else the completion is one
    statement (in autocommit on PostgreSQL). A rolled-back unit (the lease was lost) claimed nothing: the next job
    is then claimed on its own; in autocommit the statement's claim stands either way. The jobs the handler made
    (ctx.enqueue) and a workflow's steps this success releases are in the success's transaction: they exist if it
    commits, and are published after it."""
    session = unit.session
    if claimed.workflow_id is not None or children:
        now = utcnow()
        if children:
            session = unit.transaction()
            made = submit_jobs(session, registry=runtime.registry, known_queues=runtime.settings.queues,
                               requests=list(children), now=now, jobs_per_message=runtime.settings.jobs_per_message,
                               active_jobs_limit=runtime.settings.quota_active_jobs)  # fmt: skip
            refused = next((o.error for o in made.outcomes if o.error is not None), None)
            if refused is not None:  # e.g. the tenant's quota: the attempt fails (and is retried), making none
                raise refused
            publish_after_commit(session, made.messages)
        elif claimed.workflow_id is not None:  # most of a map's items: counted on their step in one statement
            counted = complete_counted(session, job=claimed, worker=worker, data=data, next_job_id=next_job_id,
                                       lease_seconds=runtime.settings.lease_seconds, now=now)  # fmt: skip
            if counted is not None:
                unit.finish(True)
                [next_claimed] = counted
                return True, None if next_claimed is None else ClaimAhead(next_claimed.id, next_claimed)
        session = unit.transaction()  # the step's last job: its success and the release of what follows, together
        completed, ahead = _completion(runtime, session, claimed, worker, data, next_job_id, now)
        if completed:
            workflow_job_finished(session, claimed, JobStatus.SUCCEEDED, now)
        unit.finish(completed)  # what it released or made is published after its commit
        return completed, ahead if completed else None  # (rolled back: nothing was claimed)
    completed, ahead = _completion(runtime, session, claimed, worker, data, next_job_id, utcnow())
    unit.finish(completed)
    # A rolled-back unit (the lease was lost) claimed nothing; in autocommit the statement's claim stands either way
    return completed, ahead if completed or unit.autocommit else None


def _completion(
    runtime: WorkerRuntime,
    session: Session,
    claimed: ClaimedJob,
    worker: str,
    data: dict[str, Any],
    next_job_id: uuid.UUID | None,
    now: datetime,
) -> tuple[bool, ClaimAhead | None]:
    """The success, and the claim of the message's next job in the same statement (PostgreSQL) or transaction."""
    job_id, attempt = claimed.id, claimed.attempt
    if next_job_id is None or next_job_id == claimed.id:
        return complete_job(session, job_id=job_id, attempt=attempt, worker=worker, data=data, now=now), None
    completed, next_claimed = complete_and_claim(session, job_id=job_id, attempt=attempt, worker=worker, data=data,
                                                 next_job_id=next_job_id, lease_seconds=runtime.settings.lease_seconds,
                                                 now=now)  # fmt: skip
    return completed, ClaimAhead(next_job_id, next_claimed)
