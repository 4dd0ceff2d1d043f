"""`echo`: returns its message; the smallest useful job, used by docs, tests and benchmarks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from core.context import JobContext
from core.registry import JobSpec


class EchoPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(max_length=100_000)


class EchoResult(BaseModel):
    message: str


def run(payload: EchoPayload, ctx: JobContext) -> EchoResult:
    return EchoResult(message=payload.message)


spec = JobSpec(name="echo", payload=EchoPayload, result=EchoResult, handler=run, description="Returns its message.")
