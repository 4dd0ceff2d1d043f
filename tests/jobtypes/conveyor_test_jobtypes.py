"""Test-only job types for the fault-injection suite.

`effect` logs every execution (start, ticks, end) to an append-only file and writes its effect as a row of the
unconstrained `test_effects` table through `ctx.session`, so the effect commits with the result or not at all.
`crash` kills its own process on every attempt (a poison pill).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text

from core.context import JobContext
from core.registry import JobSpec

TICK_SECONDS = 0.1


class EffectPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(default=0.0, ge=0, le=600)


class EffectResult(BaseModel):
    pid: int


def executions_log() -> Path:
    return Path(os.environ.get("CONVEYOR_DATA_DIR", "var")) / "executions.log"


def _log(ctx: JobContext, event: str) -> None:
    line = json.dumps({"job": str(ctx.job_id), "attempt": ctx.attempt, "pid": os.getpid(), "event": event,
                       "t": time.time()})  # fmt: skip
    with executions_log().open("a") as f:  # O_APPEND: whole lines, even from several processes
        f.write(line + "\n")


def run_effect(payload: EffectPayload, ctx: JobContext) -> EffectResult:
    _log(ctx, "start")
    deadline = time.monotonic() + payload.seconds
    while time.monotonic() < deadline:
        time.sleep(min(TICK_SECONDS, max(0.0, deadline - time.monotonic())))
        _log(ctx, "tick")
    ctx.session.execute(
        text("INSERT INTO test_effects (job_id, attempt, pid) VALUES (:job, :attempt, :pid)"),
        {"job": str(ctx.job_id), "attempt": ctx.attempt, "pid": os.getpid()},
    )
    _log(ctx, "end")
    return EffectResult(pid=os.getpid())


class CrashPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")


def run_crash(payload: CrashPayload, ctx: JobContext) -> EffectResult:
    _log(ctx, "start")
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


effect_spec = JobSpec(
    name="effect",
    payload=EffectPayload,
    result=EffectResult,
    handler=run_effect,
    description="Test only: logs its executions and writes one effect row.",
    max_attempts=5,
)
crash_spec = JobSpec(
    name="crash",
    payload=CrashPayload,
    result=EffectResult,
    handler=run_crash,
    description="Test only: kills its own worker process.",
    max_attempts=3,
)
