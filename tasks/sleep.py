"""`sleep`: waits, reporting progress about ten times a second; cancellable at each tick."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from core.context import JobContext
from core.registry import JobSpec

TICK_SECONDS = 0.1


class SleepPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(ge=0, le=3600)


class SleepResult(BaseModel):
    slept: float


def run(payload: SleepPayload, ctx: JobContext) -> SleepResult:
    started = time.monotonic()
    total_ms = round(payload.seconds * 1000)
    while (elapsed := time.monotonic() - started) < payload.seconds:
        ctx.progress(min(round(elapsed * 1000), total_ms), total_ms, "sleeping")
        time.sleep(min(TICK_SECONDS, payload.seconds - elapsed))
    ctx.progress(total_ms, total_ms, "done")
    return SleepResult(slept=round(time.monotonic() - started, 3))


spec = JobSpec(
    name="sleep",
    payload=SleepPayload,
    result=SleepResult,
    handler=run,
    description="Sleeps for `seconds`, reporting progress in milliseconds.",
)
