"""Webhooks: a tenant's endpoints, their `whsec_` secrets (rotated with an overlap), the deliveries made for its
events and the signature each POST carries (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
`webhook-signature` = `v1,<base64 HMAC-SHA256 of id.timestamp.body>`, signed by the `standardwebhooks` package).

A delivery is a job of type `webhook_delivery` on the webhooks queue (tasks/webhook_delivery.py): retried with
backoff, each attempt recorded in webhook_attempts; its status is its job's. Events become deliveries in
core/webhook_dispatch.py.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from standardwebhooks import Webhook as Signer

from core.errors import ConveyorError, PayloadInvalid
from core.models import Job, Webhook, WebhookAttempt, WebhookDelivery
from core.outbound import Guard
from core.queries import decode_cursor, encode_cursor
from core.status import JobStatus
from core.types import utcnow

DELIVERY_TYPE = "webhook_delivery"
# The event a job's finish makes, by the status it finished in (core/webhook_dispatch.py reads job_events by it).
JOB_EVENTS = {status.value: f"job.{status.value}" for status in (JobStatus.SUCCEEDED, JobStatus.FAILED,
                                                                   JobStatus.CANCELLED)}  # fmt: skip
MAX_ROTATION_OVERLAP = timedelta(days=7)
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


class WebhookNotFound(ConveyorError):
    slug, status, title = "not-found", 404, "Not found"


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def new_delivery_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def create_webhook(
    session: Session,
    *,
    tenant_id: str,
    url: str,
    event_types: list[str],
    job_types: list[str] | None,
    description: str | None,
    actor: str,
    guard: Guard,
    now: datetime | None = None,
) -> Webhook:
    """A new endpoint, its URL checked by the SSRF guard now (and again on every delivery)."""
    guard.check(url)
    now = now or utcnow()
    webhook = Webhook(id=uuid.uuid4(), tenant_id=tenant_id, kind="endpoint", url=url, event_types=event_types,
                      job_types=job_types, description=description, secret=new_secret(), created_by=actor,
                      created_at=now, updated_at=now)  # fmt: skip
    session.add(webhook)
    session.flush()
    return webhook


def list_webhooks(session: Session, tenant_id: str) -> list[Webhook]:
    query = select(Webhook).where(Webhook.tenant_id == tenant_id).order_by(Webhook.created_at, Webhook.id)
    return list(session.scalars(query))


def get_webhook(session: Session, webhook_id: uuid.UUID, *, tenant_id: str) -> Webhook:
    webhook = session.get(Webhook, webhook_id)
    if webhook is None or webhook.tenant_id != tenant_id:
        raise WebhookNotFound(f"No webhook with id {webhook_id}.")
    return webhook


def rotate_secret(webhook: Webhook, *, overlap: timedelta, now: datetime | None = None) -> Webhook:
    """A new secret; the old one keeps signing (beside the new) for `overlap`, so receivers can switch."""
    now = now or utcnow()
    webhook.previous_secret = webhook.secret if overlap > timedelta(0) else None
    webhook.previous_secret_expires_at = now + overlap if overlap > timedelta(0) else None
    webhook.secret = new_secret()
    webhook.updated_at = now
    return webhook


def signing_secrets(webhook: Webhook, now: datetime) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one during its overlap."""
    valid = [webhook.secret]
    expires = webhook.previous_secret_expires_at
    if webhook.previous_secret and expires is not None and expires > now:
        valid.append(webhook.previous_secret)
    return valid


def signed_headers(secrets_: list[str], delivery_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one POST: one `v1,` signature per secret, space-separated."""
    signature = " ".join(Signer(secret).sign(delivery_id, timestamp, body) for secret in secrets_)
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
        "User-Agent": "Conveyor-Webhooks/1",
    }


def callbacks_webhook(session: Session, tenant_id: str, *, now: datetime | None = None) -> Webhook:
    """The tenant's `callbacks` row, whose secret signs the POSTs to jobs' callback_url: made on first use (two
    submits at once make one, by its unique index)."""
    of_tenant = select(Webhook).where(Webhook.tenant_id == tenant_id, Webhook.kind == "callbacks")
    found = session.scalars(of_tenant).first()
    if found is not None:
        return found
    now = now or utcnow()
    made = Webhook(id=uuid.uuid4(), tenant_id=tenant_id, kind="callbacks", url=None,
                   event_types=list(JOB_EVENTS.values()),
                   job_types=None, description="Signs the deliveries to each job's callback_url.",
                   secret=new_secret(), created_by="conveyor", created_at=now, updated_at=now)  # fmt: skip
    try:
        with session.begin_nested():
            session.add(made)
            session.flush()
    except IntegrityError:  # the other submit's row
        return session.scalars(of_tenant).one()
    return made


def check_callback_url(url: str | None, guard: Guard) -> None:
    """At submit: a job's callback_url passes the SSRF guard (checked again when it is called), or 422."""
    if url is None:
        return
    try:
        guard.check(url)
    except ConveyorError as exc:
        raise PayloadInvalid(exc.detail, errors=[{"field": "callback_url", "message": exc.detail}]) from None


def event_body(event_type: str, data: dict[str, Any], now: datetime) -> dict[str, Any]:
    """An event as Standard Webhooks suggests: its type, when it happened, and its data."""
    return {"type": event_type, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data}


def job_data(job: Job, result: dict[str, Any] | None) -> dict[str, Any]:
    """What an event says of a job: enough to act on without a second request (its error without the traceback,
    which names server paths)."""
    error = {k: v for k, v in (job.error or {}).items() if k in ("type", "message")} or None
    return {"job": {"id": str(job.id), "type": job.type, "queue": job.queue, "status": job.status,
                    "attempt": job.attempt, "created_at": job.created_at.isoformat(),
                    "finished_at": job.finished_at.isoformat() if job.finished_at else None,
                    "error": error, "result": result}}  # fmt: skip


@dataclass(frozen=True)
class NewDelivery:
    """A delivery to make: for which webhook, to which URL, what (dedupe_key: once per webhook and event)."""

    webhook: Webhook
    url: str
    event_type: str
    body: dict[str, Any]
    dedupe_key: str


def add_deliveries(session: Session, new: list[NewDelivery]) -> list[WebhookDelivery]:
    """The deliveries not made before (by dedupe_key), added to the session; the caller gives each its job."""
    if not new:
        return []
    keys = [d.dedupe_key for d in new]
    existing = set(session.scalars(select(WebhookDelivery.dedupe_key).where(WebhookDelivery.dedupe_key.in_(keys))))
    made = []
    for item in new:
        if item.dedupe_key in existing:
            continue
        existing.add(item.dedupe_key)
        delivery = WebhookDelivery(id=new_delivery_id(), tenant_id=item.webhook.tenant_id, webhook_id=item.webhook.id,
                                   url=item.url, event_type=item.event_type, dedupe_key=item.dedupe_key,
                                   payload=item.body, job_id=None, created_at=utcnow())  # fmt: skip
        session.add(delivery)
        made.append(delivery)
    session.flush()
    return made


def delivery_payload(delivery: WebhookDelivery) -> dict[str, Any]:
    return {"delivery_id": delivery.id}


def list_deliveries(
    session: Session, webhook: Webhook, *, limit: int, cursor: str | None = None
) -> tuple[list[tuple[WebhookDelivery, Job | None]], str | None]:
    """A webhook's deliveries, newest first, each with its current job (whose status is the delivery's),
    keyset-paginated on (created_at, id) as GET /v1/jobs is. Returns the page and the next cursor (or None)."""
    query = select(WebhookDelivery, Job).outerjoin(Job, Job.id == WebhookDelivery.job_id)
    query = query.where(WebhookDelivery.webhook_id == webhook.id, WebhookDelivery.tenant_id == webhook.tenant_id)
    if cursor:
        at, delivery_id = decode_cursor(cursor, str)
        query = query.where(tuple_(WebhookDelivery.created_at, WebhookDelivery.id) < tuple_(at, delivery_id))
    query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(limit + 1)
    rows: list[tuple[WebhookDelivery, Job | None]] = [(delivery, job) for delivery, job in session.execute(query)]
    last = rows[limit - 1][0] if len(rows) > limit else None
    return rows[:limit], (encode_cursor(last.created_at, last.id) if last is not None else None)


def attempts_of(session: Session, delivery_ids: list[str]) -> dict[str, list[WebhookAttempt]]:
    found: dict[str, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
    query = select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(delivery_ids)).order_by(WebhookAttempt.id)
    for attempt in session.scalars(query):
        found[attempt.delivery_id].append(attempt)
    return found


def get_delivery(session: Session, webhook: Webhook, delivery_id: str) -> WebhookDelivery:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.webhook_id != webhook.id or delivery.tenant_id != webhook.tenant_id:
        raise WebhookNotFound(f"No delivery with id {delivery_id} for webhook {webhook.id}.")
    return delivery


def body_text(delivery: WebhookDelivery) -> str:
    """The exact bytes signed and sent: the same on every attempt."""
    return json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True)
