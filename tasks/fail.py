"""`fail`: raises on its first `times` attempts, then succeeds; exercises retries and the dead-letter path."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from core.context import JobContext
from core.registry import JobSpec


class FailPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    times: int = Field(ge=0, le=100)
    message: str | None = Field(
        default=None, min_length=1, max_length=500, description="The error's message (default: which attempt failed)."
    )


class FailResult(BaseModel):
    attempts: int


class DeliberateFailure(RuntimeError):
    pass


def run(payload: FailPayload, ctx: JobContext) -> FailResult:
    if ctx.attempt <= payload.times:
        raise DeliberateFailure(
            payload.message or f"failing on purpose: attempt {ctx.attempt} of the first {payload.times}"
        )
    ctx.logger.info("succeeding after %s failed attempts", payload.times)
    return FailResult(attempts=ctx.attempt)


spec = JobSpec(
    name="fail",
    payload=FailPayload,
    result=FailResult,
    handler=run,
    description="Fails its first `times` attempts, then succeeds.",
    retry_backoff=0.5,
)
