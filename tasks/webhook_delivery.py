"""`webhook_delivery`: one POST of a delivery to its URL, signed (Standard Webhooks) and through the SSRF guard.

Each attempt is recorded in its own transaction (it stays when the attempt fails and the job's unit of work rolls
back). A 2xx answer succeeds; anything else, a timeout or a refused address fails the attempt, and the job retries
with backoff until its attempts run out. The `webhook-id` is the delivery's on every attempt, so a receiver that
got an attempt whose answer was lost can tell the next one is the same event.
"""

from __future__ import annotations

import http.client

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import insert
from sqlalchemy.orm import Session

from core.context import JobContext
from core.errors import ConveyorError, PayloadInvalid
from core.models import Webhook, WebhookAttempt, WebhookDelivery
from core.outbound import Guard, post
from core.queue_names import QueueNames
from core.registry import JobSpec
from core.types import utcnow
from core.webhooks import body_text, signed_headers, signing_secrets

RESPONSE_KEPT = 1000  # characters of a receiver's answer kept with the attempt


class DeliveryPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delivery_id: str = Field(pattern=r"^msg_[0-9a-f]{32}$")


class DeliveryResult(BaseModel):
    status_code: int | None
    latency_ms: float | None
    skipped: str | None = None  # why nothing was sent (the webhook was deleted meanwhile)


class DeliveryFailed(RuntimeError):
    """The receiver did not take the delivery (a non-2xx answer, a timeout, a refused address)."""


def check(payload: DeliveryPayload, session: Session, tenant_id: str) -> None:
    delivery = session.get(WebhookDelivery, payload.delivery_id)
    if delivery is None or delivery.tenant_id != tenant_id:
        raise PayloadInvalid(f"No webhook delivery with id {payload.delivery_id!r}.",
                             errors=[{"field": "payload.delivery_id", "message": "not found"}])  # fmt: skip


def run(payload: DeliveryPayload, ctx: JobContext) -> DeliveryResult:
    with Session(ctx.engine) as session:
        delivery = session.get(WebhookDelivery, payload.delivery_id)
        if delivery is None:  # its webhook was deleted (with its deliveries) after this job was made
            return DeliveryResult(status_code=None, latency_ms=None, skipped="the webhook no longer exists")
        webhook = session.get_one(Webhook, delivery.webhook_id)
        if delivery.tenant_id != ctx.tenant_id:  # the worker's own check: a delivery is its tenant's only
            raise DeliveryFailed(f"delivery {delivery.id} is not tenant {ctx.tenant_id!r}'s")
        now = utcnow()
        body = body_text(delivery)
        headers = signed_headers(signing_secrets(webhook, now), delivery.id, now, body)
        url = delivery.url
    guard = Guard.of(ctx.settings)
    status, latency, error, answer = None, None, None, None
    try:
        response = post(guard, url, body.encode(), headers, read_timeout=ctx.settings.webhook_timeout_seconds,
                        connect_timeout=min(5.0, ctx.settings.webhook_timeout_seconds))  # fmt: skip
        status, latency = response.status, round(response.latency_ms, 1)
        answer = response.body.decode("utf-8", "replace")[:RESPONSE_KEPT]
    except ConveyorError as exc:  # refused by the SSRF guard: nothing was sent
        error = exc.detail
    except (OSError, http.client.HTTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"
    _record(ctx, delivery.id, status, latency, error, answer)
    if status is None or not 200 <= status < 300:
        raise DeliveryFailed(error or f"the receiver answered {status}")
    assert latency is not None  # noqa: S101 - set with status
    return DeliveryResult(status_code=status, latency_ms=latency)


def _record(ctx: JobContext, delivery_id: str, status: int | None, latency: float | None, error: str | None,
            answer: str | None) -> None:  # fmt: skip
    with ctx.engine.begin() as conn:
        conn.execute(insert(WebhookAttempt).values(delivery_id=delivery_id, job_id=ctx.job_id, attempt=ctx.attempt,
                                                   status_code=status, latency_ms=latency, error=error,
                                                   response=answer, created_at=utcnow()))  # fmt: skip


spec = JobSpec(
    name="webhook_delivery",
    payload=DeliveryPayload,
    result=DeliveryResult,
    handler=run,
    description="Delivers one webhook event (made by Conveyor for its webhooks; a redelivery submits it again).",
    queue=QueueNames.WEBHOOKS,
    max_attempts=10,
    retry_backoff=5.0,
    check=check,
)
