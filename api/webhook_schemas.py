"""Pydantic models of /v1/webhooks: an endpoint to create, one as listed (never its secret), its secret, its
deliveries with their attempts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import Strict
from core.models import Job, WebhookAttempt, WebhookDelivery
from core.status import JobStatus
from core.webhooks import MAX_ROTATION_OVERLAP

EventType = Literal["job.succeeded", "job.failed", "job.cancelled", "dataset.ready"]
DeliveryStatus = Literal["pending", "succeeded", "failed"]
DAY = 86400


class WebhookCreate(Strict):
    url: str = Field(min_length=1, max_length=2048, description="http(s) URL of the receiver (a public address).")
    event_types: list[EventType] = Field(min_length=1, max_length=4, description="The events it receives.")
    job_types: list[str] | None = Field(
        default=None, max_length=100, description="Only events of jobs of these types (default: every type)."
    )
    description: str | None = Field(default=None, max_length=200)


class RotateBody(Strict):
    overlap_seconds: int = Field(
        default=DAY,
        ge=0,
        le=int(MAX_ROTATION_OVERLAP.total_seconds()),
        description="How long the old secret keeps signing beside the new one.",
    )


class WebhookRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    tenant_id: str
    kind: Literal["endpoint", "callbacks"] = Field(
        description="`callbacks`: the row whose secret signs the POSTs to jobs' own callback_url."
    )
    url: str | None
    event_types: list[str]
    job_types: list[str] | None
    description: str | None
    previous_secret_expires_at: datetime | None = Field(description="Until then the previous secret signs too.")
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class WebhookSecret(BaseModel):
    secret: str = Field(description="`whsec_…`: verify deliveries with it (e.g. the standardwebhooks package).")
    previous_secret_expires_at: datetime | None


class WebhookCreated(WebhookRead):
    secret: str = Field(description="`whsec_…`; also at GET /v1/webhooks/{id}/secret.")


class WebhookList(BaseModel):
    items: list[WebhookRead]


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    status_code: int | None
    latency_ms: float | None
    error: str | None = Field(description="Why no answer was had: a timeout, a refused connection or address.")
    response: str | None = Field(description="The start of the receiver's answer.")
    created_at: datetime


class DeliveryRead(BaseModel):
    id: str = Field(description="The `webhook-id` header: the same on every attempt and redelivery.")
    webhook_id: uuid.UUID
    event_type: str
    url: str
    status: DeliveryStatus = Field(description="Its delivery job's: pending until a 2xx, failed once out of tries.")
    job_id: uuid.UUID | None
    next_attempt_at: datetime | None
    payload: dict[str, Any]
    attempts: list[AttemptRead]
    created_at: datetime

    @classmethod
    def of(cls, delivery: WebhookDelivery, job: Job | None, attempts: list[WebhookAttempt]) -> DeliveryRead:
        status: DeliveryStatus = "pending"
        if job is not None and job.status == JobStatus.SUCCEEDED:
            status = "succeeded"
        elif job is not None and job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            status = "failed"
        next_attempt_at = job.next_attempt_at if job is not None and job.status == JobStatus.RETRYING else None
        return cls(id=delivery.id, webhook_id=delivery.webhook_id, event_type=delivery.event_type, url=delivery.url,
                   status=status, job_id=delivery.job_id, next_attempt_at=next_attempt_at,
                   payload=delivery.payload, attempts=[AttemptRead.model_validate(a) for a in attempts],
                   created_at=delivery.created_at)  # fmt: skip


class DeliveryList(BaseModel):
    items: list[DeliveryRead]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")


class DeliveryQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=500, description="`next_cursor` of the previous page.")
