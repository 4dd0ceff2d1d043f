"""/v1/webhooks: a tenant's endpoints — create, list, read, delete, rotate the secret, read it — and their
deliveries: list with every attempt, redeliver one. The events and their signatures: core/webhooks.py."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from apiflask import APIBlueprint
from flask import url_for

from api.auth import audit, principal, requires, tenant
from api.extension import conveyor, db, publish_job
from api.request_log import request_id
from api.webhook_schemas import (
    DeliveryList,
    DeliveryQuery,
    DeliveryRead,
    RotateBody,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookRead,
    WebhookSecret,
)
from core.errors import PayloadInvalid
from core.keys import Scope
from core.models import Webhook
from core.outbound import Guard
from core.submit import JobRequest, submit_job
from core.webhooks import (
    DELIVERY_TYPE,
    WebhookNotFound,
    attempts_of,
    create_webhook,
    delivery_payload,
    get_delivery,
    get_webhook,
    list_deliveries,
    list_webhooks,
    rotate_secret,
)

bp = APIBlueprint("webhooks", __name__, url_prefix="/v1/webhooks", tag="Webhooks")


def parse_webhook_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise WebhookNotFound(f"No webhook with id {raw!r} (webhook ids are UUIDs).") from None


def the_webhook(webhook_id: str) -> Webhook:
    return get_webhook(db(), parse_webhook_id(webhook_id), tenant_id=tenant())


def created(webhook: Webhook) -> WebhookCreated:
    return WebhookCreated.model_validate({**WebhookRead.model_validate(webhook).model_dump(), "secret": webhook.secret})


@bp.post("")
@requires(Scope.WEBHOOKS_WRITE)
@bp.input(WebhookCreate, location="json", arg_name="body")
@bp.output(WebhookCreated, status_code=201, description="The endpoint, with its signing secret.")
@bp.doc(summary="Create a webhook endpoint",
        responses={422: "A URL the SSRF guard refuses, an unknown job type", 415: "Not JSON"})  # fmt: skip
def create(body: WebhookCreate) -> Any:
    unknown = [t for t in body.job_types or [] if t not in conveyor().registry]
    if unknown:
        raise PayloadInvalid(f"No job type named {unknown[0]!r} (GET /v1/job-types lists them).",
                             errors=[{"field": "job_types", "message": f"unknown: {', '.join(unknown)}"}])  # fmt: skip
    session = db()
    webhook = create_webhook(session, tenant_id=tenant(), url=body.url, event_types=list(body.event_types),
                             job_types=body.job_types, description=body.description, actor=principal().key_id,
                             guard=Guard.of(conveyor().settings))  # fmt: skip
    audit("webhook.created", "webhook", webhook.id, {"url": body.url, "event_types": webhook.event_types})
    session.commit()
    return created(webhook), 201, {"Location": url_for("webhooks.get_one", webhook_id=str(webhook.id))}


@bp.get("")
@requires(Scope.WEBHOOKS_WRITE)
@bp.output(WebhookList)
@bp.doc(summary="List this tenant's webhooks (never their secrets)")
def list_all() -> Any:
    return WebhookList(items=[WebhookRead.model_validate(w) for w in list_webhooks(db(), tenant())])


@bp.get("/<webhook_id>")
@requires(Scope.WEBHOOKS_WRITE)
@bp.output(WebhookRead)
@bp.doc(summary="Read a webhook", responses={404: "No such webhook"})
def get_one(webhook_id: str) -> Any:
    return WebhookRead.model_validate(the_webhook(webhook_id))


@bp.get("/<webhook_id>/secret")
@requires(Scope.WEBHOOKS_WRITE)
@bp.output(WebhookSecret)
@bp.doc(summary="The webhook's signing secret", responses={404: "No such webhook"})
def secret(webhook_id: str) -> Any:
    webhook = the_webhook(webhook_id)
    return WebhookSecret(secret=webhook.secret, previous_secret_expires_at=webhook.previous_secret_expires_at)


@bp.delete("/<webhook_id>")
@requires(Scope.WEBHOOKS_WRITE)
@bp.output({}, status_code=204)
@bp.doc(summary="Delete a webhook and its deliveries' records", responses={404: "No such webhook"})
def delete(webhook_id: str) -> Any:
    session = db()
    webhook = the_webhook(webhook_id)
    session.delete(webhook)
    audit("webhook.deleted", "webhook", webhook.id, {"url": webhook.url})
    session.commit()
    return ""


@bp.post("/<webhook_id>/rotate")
@requires(Scope.WEBHOOKS_WRITE)
@bp.input(RotateBody, location="json", arg_name="body")
@bp.output(WebhookCreated, description="The webhook with its new secret.")
@bp.doc(
    summary="Rotate the signing secret",
    description="Deliveries are signed with the new secret and, for `overlap_seconds` (a day by default), with the "
    "old one too: `webhook-signature` then holds two `v1,` signatures, and a receiver that knows either accepts.",
    responses={404: "No such webhook"},
)
def rotate(webhook_id: str, body: RotateBody) -> Any:
    session = db()
    webhook = rotate_secret(the_webhook(webhook_id), overlap=timedelta(seconds=body.overlap_seconds))
    audit("webhook.rotated", "webhook", webhook.id, {"overlap_seconds": body.overlap_seconds})
    session.commit()
    return created(webhook)


@bp.get("/<webhook_id>/deliveries")
@requires(Scope.WEBHOOKS_WRITE)
@bp.input(DeliveryQuery, location="query", arg_name="query")
@bp.output(DeliveryList)
@bp.doc(summary="The webhook's deliveries, newest first, each with every attempt",
        responses={400: "Bad cursor", 404: "No such webhook"})  # fmt: skip
def deliveries(webhook_id: str, query: DeliveryQuery) -> Any:
    session = db()
    found, next_cursor = list_deliveries(session, the_webhook(webhook_id), limit=query.limit, cursor=query.cursor)
    attempts = attempts_of(session, [delivery.id for delivery, _ in found])
    items = [DeliveryRead.of(delivery, job, attempts[delivery.id]) for delivery, job in found]
    return DeliveryList(items=items, next_cursor=next_cursor)


@bp.post("/<webhook_id>/deliveries/<delivery_id>/redeliver")
@requires(Scope.WEBHOOKS_WRITE)
@bp.output(DeliveryRead, status_code=202)
@bp.doc(summary="Deliver again (the same webhook-id and body, a new job)", responses={404: "No such delivery"})
def redeliver(webhook_id: str, delivery_id: str) -> Any:
    session, ext = db(), conveyor()
    webhook = the_webhook(webhook_id)
    delivery = get_delivery(session, webhook, delivery_id)
    request = JobRequest(type=DELIVERY_TYPE, payload=delivery_payload(delivery), tenant_id=tenant(),
                         actor=principal().key_id, request_id=request_id())  # fmt: skip
    job, _ = submit_job(session, registry=ext.registry, known_queues=ext.settings.queues, request=request)
    delivery.job_id = job.id
    audit("webhook.redelivered", "webhook", webhook.id, {"delivery_id": delivery.id, "job_id": str(job.id)})
    session.commit()
    publish_job(job)
    return DeliveryRead.of(delivery, job, attempts_of(session, [delivery.id])[delivery.id]), 202
