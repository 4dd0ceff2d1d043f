"""Submitting jobs: validation against the job type, idempotency and unique keys, and the insert (one or many).

Functions take the caller's session first and never commit: the caller commits, then publishes.
"""

from __future__ import annotations

import collections
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Select, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached

from core import metrics, statements
from core.errors import ConveyorError, IdempotencyMismatch, PayloadInvalid, UnknownQueue, UnknownType
from core.ids import uuid7
from core.models import UNFINISHED, Job
from core.publish import messages_of, record_message_sizes
from core.queue import Message
from core.quotas import JobRoom, UsageCache
from core.registry import JobSpec, Registry, UnknownJobType
from core.statements.shared import JOB_COLUMNS, event_row
from core.status import JobStatus
from core.types import iso_or_none, utcnow

S = JobStatus
UNSET = {attribute: None for attribute, _ in JOB_COLUMNS}  # a new job's columns a request does not set


def request_fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class JobRequest:
    """One job to submit, as the API or a scheduler asks for it."""

    type: str
    payload: dict[str, Any]
    priority: int | None = None
    queue: str | None = None
    run_at: datetime | None = None
    max_attempts: int | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    unique_key: str | None = None
    expires_at: datetime | None = None
    schedule_id: uuid.UUID | None = None
    schedule_slot: datetime | None = None
    tenant_id: str = "default"
    actor: str | None = None  # the API key that asked, recorded in the job's first event
    request_id: str | None = None  # the API request that asked (api/request_log.py), on the worker's log lines
    callback_url: str | None = None  # checked by the caller (core.webhooks.check_callback_url)
    workflow_id: uuid.UUID | None = None  # the workflow step it runs for (core/workflows), and its item's place
    workflow_step: str | None = None
    map_index: int | None = None
    parent_id: uuid.UUID | None = None  # the job whose handler made it (ctx.enqueue)
    job_id: uuid.UUID | None = None  # the new job's id, when the caller has already told it to someone

    @property
    def keyed(self) -> bool:
        """Whether a unique index may refuse the insert (idempotency, unique or schedule-slot key)."""
        return self.idempotency_key is not None or self.unique_key is not None or self.schedule_slot is not None


@dataclass(frozen=True)
class Submitted:
    """The outcome of one request: a new job, an existing one (idempotency or unique key), or an error."""

    job: Job | None
    created: bool
    error: ConveyorError | None = None


@dataclass(frozen=True)
class Submission:
    """What `submit_jobs` did: one outcome per request, in order, and the messages that wake the jobs it made that
    are due, for the caller to publish once it has committed (core.publish.publish_committed)."""

    outcomes: list[Submitted]
    messages: list[Message]


def one_statement(session: Session, registry: Registry, requests: list[JobRequest]) -> bool:
    """Whether `submit_jobs` writes these requests in a single statement, which may then run in autocommit
    (core.db.single_statement): on PostgreSQL, with no key to look up and no type's `check` hook to run."""
    return statements.of(session).ONE_STATEMENT_SUBMIT and not any(
        r.keyed or (r.type in registry and registry.get(r.type).check is not None) for r in requests
    )


def submit_job(
    session: Session,
    *,
    registry: Registry,
    known_queues: list[str],
    request: JobRequest,
    now: datetime | None = None,
    active_jobs_limit: int = 0,
) -> tuple[Job, bool]:
    """Validate and insert one job (flushed, not committed). Returns (job, created). created is False when the
    Idempotency-Key names a job made from the same request, or when an unfinished job holds the unique_key (the
    policy: the existing active job is returned, nothing new is made). Raises the ConveyorError otherwise."""
    [outcome] = submit_jobs(session, registry=registry, known_queues=known_queues, requests=[request], now=now,
                            active_jobs_limit=active_jobs_limit).outcomes  # fmt: skip
    if outcome.error is not None:
        raise outcome.error
    assert outcome.job is not None  # noqa: S101 - an outcome has a job or an error
    return outcome.job, outcome.created


def submit_jobs(
    session: Session,
    *,
    registry: Registry,
    known_queues: list[str],
    requests: list[JobRequest],
    now: datetime | None = None,
    jobs_per_message: int = 1,
    active_jobs_limit: int = 0,
    usage_cache: UsageCache | None = None,
) -> Submission:
    """Validate and insert many jobs in the caller's transaction (flushed, not committed): one outcome per request,
    in order, each in its request's tenant. Jobs without keys go in as one bulk insert; keyed ones each in a
    savepoint, so a lost race on a key answers with the winner's job instead of failing the batch. With
    `jobs_per_message` > 1 the rows record the size of the message that wakes them (ADR 0005). A job past
    its tenant's `active_jobs_limit` of unfinished jobs (0: none) is refused with QuotaExceeded; `usage_cache` lets
    a submit far from it skip the count (core/quotas.py)."""
    now = now or utcnow()
    outcomes: list[Submitted] = []
    plain: list[Job] = []
    room = JobRoom(session, active_jobs_limit, usage_cache)
    for request in requests:
        try:
            existing = _existing_job(session, request)
            if existing is not None:
                outcomes.append(Submitted(existing, created=False))
                continue
            spec, payload, queue = validated_request(registry, known_queues, request)
            if spec.check is not None:  # with the tenant: a payload may name only the tenant's own objects
                spec.check(payload, session, request.tenant_id)
            job = _job_of(request, spec, payload, queue, now)
            over_quota = room.take(request.tenant_id)
            if over_quota is not None:
                raise over_quota
        except ConveyorError as exc:
            outcomes.append(Submitted(None, created=False, error=exc))
            continue
        if not request.keyed:
            plain.append(job)
            outcomes.append(Submitted(job, created=True))
        else:
            outcomes.append(_insert_keyed(session, job, request))
    made = [(o.job, r.actor) for o, r in zip(outcomes, requests, strict=True) if o.created and o.job is not None]
    created, actors = [job for job, _ in made], [actor for _, actor in made]
    batch = messages_of(created, registry, jobs_per_message=jobs_per_message)
    record_message_sizes(batch, created)  # before the insert: the plain jobs need no UPDATE
    if created:
        _insert(session, plain, created, actors, now)
        for (job_type, queue), made_here in collections.Counter((j.type, j.queue) for j in created).items():
            metrics.count(session, metrics.SUBMITTED, job_type, queue, amount=made_here)
    # The jobs join the session as if loaded (refresh, identity map).
    for job in plain:
        make_transient_to_detached(job)
        session.add(job)
    return Submission(outcomes, batch)


def _insert(session: Session, plain: list[Job], created: list[Job], actors: list[str | None], now: datetime) -> None:
    """The plain jobs' rows and every created job's `queued`/`scheduled` event, through the database's statements
    (core/statements): Core inserts, not the ORM's unit of work, which took a third of a POST (ADR 0012)."""
    rows = [{column: getattr(job, attribute) for attribute, column in JOB_COLUMNS} for job in plain]
    events = [event_row(j.id, j.status, detail={"queue": j.queue, "run_at": iso_or_none(j.run_at), "actor": actor},
                        now=now) for j, actor in zip(created, actors, strict=True)]  # fmt: skip
    statements.of(session).insert_jobs(session.connection(), rows, events)


def check_request(session: Session, registry: Registry, known_queues: list[str], request: JobRequest) -> BaseModel:
    """A request checked as a submit checks it, without making its job: its type, payload and queue, and its type's
    own check against the database (with the tenant: a payload may name only the tenant's own objects). Returns the
    payload; raises the ConveyorError a submit answers with."""
    spec, payload, _ = validated_request(registry, known_queues, request)
    if spec.check is not None:
        spec.check(payload, session, request.tenant_id)
    return payload


def build_job(registry: Registry, known_queues: list[str], request: JobRequest, now: datetime) -> Job:
    """The job a request makes, validated against its type and the known queues (not added to any session)."""
    return _job_of(request, *validated_request(registry, known_queues, request), now)


def validated_request(
    registry: Registry, known_queues: list[str], request: JobRequest
) -> tuple[JobSpec, BaseModel, str]:
    """The request's job type, its payload validated by the type's model, and its queue (known to a worker): what a
    submit checks of a request without the database. Raises the ConveyorError a submit answers with."""
    try:
        spec = registry.get(request.type)
    except UnknownJobType:
        known = ", ".join(s.name for s in registry)
        raise UnknownType(f"No job type named {request.type!r}. Known types: {known}.") from None
    try:
        payload = spec.payload.model_validate(request.payload)
    except ValidationError as exc:
        raise PayloadInvalid(
            f"The payload does not match the {request.type!r} job type's schema (GET /v1/job-types shows it).",
            errors=[_field_error(("payload", *e["loc"]), e["msg"]) for e in exc.errors()],
        ) from None
    queue = request.queue or spec.queue
    if queue not in known_queues:
        raise UnknownQueue(f"No worker consumes queue {queue!r}. Known queues: {', '.join(known_queues)}.")
    return spec, payload, queue


def _job_of(request: JobRequest, spec: JobSpec, payload: BaseModel, queue: str, now: datetime) -> Job:
    due = request.run_at is None or request.run_at <= now
    given = dict(
        id=request.job_id or uuid7(),
        tenant_id=request.tenant_id,
        type=request.type,
        queue=queue,
        priority=spec.priority if request.priority is None else request.priority,
        status=(S.QUEUED if due else S.SCHEDULED).value,
        payload=payload.model_dump(mode="json"),
        attempt=0,
        max_attempts=request.max_attempts or spec.max_attempts,
        run_at=request.run_at,
        published_at=now if due else None,  # optimistic: the caller publishes after commit, or clears it on failure
        message_jobs=1,
        idempotency_key=request.idempotency_key,
        request_hash=request.request_hash,
        unique_key=request.unique_key,
        expires_at=request.expires_at,
        schedule_id=request.schedule_id,
        schedule_slot=request.schedule_slot,
        callback_url=request.callback_url,
        request_id=request.request_id,
        workflow_id=request.workflow_id,
        workflow_step=request.workflow_step,
        map_index=request.map_index,
        parent_id=request.parent_id,
        cancel_requested=False,
        created_at=now,
        updated_at=now,
    )
    # Every column is given (UNSET: None), so the row is whole without a load or a default: `_insert` reads them all.
    return Job(**(UNSET | given))


def _insert_keyed(session: Session, job: Job, request: JobRequest) -> Submitted:
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
        return Submitted(job, created=True)
    except IntegrityError:
        # A concurrent request with the same key won the race (the unique indexes decide): answer with its job.
        try:
            existing = _existing_job(session, request)
        except ConveyorError as exc:
            return Submitted(None, created=False, error=exc)
        if existing is None:
            raise
        return Submitted(existing, created=False)


def _existing_job(session: Session, request: JobRequest) -> Job | None:
    """The job a key of the request names, looked up in the request's tenant only (keys are per tenant)."""
    tenant_id = request.tenant_id
    if request.idempotency_key is not None:
        existing = session.scalars(by_idempotency_key(tenant_id, request.idempotency_key)).one_or_none()
        if existing is not None:
            if existing.request_hash != request.request_hash:
                raise IdempotencyMismatch(
                    "This Idempotency-Key was already used with a different request body. Use a new key for a new job."
                )
            return existing
    if request.unique_key is not None:
        return session.scalars(by_unique_key(tenant_id, request.unique_key)).one_or_none()
    if request.schedule_id is not None and request.schedule_slot is not None:
        return session.scalars(by_schedule_slot(request.schedule_id, request.schedule_slot)).one_or_none()
    return None


# The lookups by key, each answered by its key's unique index (tests/core/test_query_plans.py checks it).
def by_idempotency_key(tenant_id: str, key: str) -> Select[Job]:
    return select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key)


def by_unique_key(tenant_id: str, key: str) -> Select[Job]:
    """The unfinished job holding the key. The index's own predicate, as text: SQLite uses a partial index only for
    a query that repeats its terms, which a list of statuses in bound parameters does not."""
    return select(Job).where(Job.tenant_id == tenant_id, Job.unique_key == key, text(UNFINISHED))


def by_schedule_slot(schedule_id: uuid.UUID, slot: datetime) -> Select[Job]:
    return select(Job).where(Job.schedule_id == schedule_id, Job.schedule_slot == slot)


def _field_error(loc: tuple[Any, ...], msg: str) -> dict[str, Any]:
    return {"field": ".".join(str(p) for p in loc), "message": msg}
