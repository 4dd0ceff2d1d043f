"""Test-only job types for the fault-injection suite.

`effect` logs every execution (start, ticks, end) to an append-only file and writes its effect as a row of the
unconstrained `test_effects` table through `ctx.session`, so the effect commits with the result or not at all.
`crash` kills its own process on every attempt (a poison pill).
`collect` returns what it was given (a list and a value): the workflow tests' fan-out source and fan-in sink.
`spawn` makes child jobs with ctx.enqueue, then fails its first `fail_times` attempts (or sleeps, to be killed).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

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


class CollectPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Any] = Field(default_factory=list)
    value: Any = None
    fail: bool = False  # raise instead (not retryable: a failed step at once)


class CollectResult(BaseModel):
    items: list[Any]
    count: int
    value: Any


class CollectRefused(ValueError):
    pass


def run_collect(payload: CollectPayload, ctx: JobContext) -> CollectResult:
    if payload.fail:
        raise CollectRefused(f"asked to fail (value {payload.value!r})")
    return CollectResult(items=payload.items, count=len(payload.items), value=payload.value)


collect_spec = JobSpec(
    name="collect",
    payload=CollectPayload,
    result=CollectResult,
    handler=run_collect,
    description="Test only: returns its items and value (fails if asked to).",
    max_attempts=1,
)


class SpawnPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    children: int = Field(default=1, ge=0, le=1000)
    child_payload: dict[str, Any] = Field(default_factory=lambda: {"message": "child"})
    child_type: str = "echo"
    fail_times: int = 0
    seconds: float = Field(default=0.0, ge=0, le=600)  # after enqueueing: a window to kill the worker in


class SpawnResult(BaseModel):
    children: list[str]


def run_spawn(payload: SpawnPayload, ctx: JobContext) -> SpawnResult:
    made = [str(ctx.enqueue(payload.child_type, payload.child_payload)) for _ in range(payload.children)]
    deadline = time.monotonic() + payload.seconds
    while time.monotonic() < deadline:
        time.sleep(min(TICK_SECONDS, max(0.0, deadline - time.monotonic())))
        ctx.progress(0)
    if ctx.attempt <= payload.fail_times:
        raise CollectRefused(f"failing after enqueueing, attempt {ctx.attempt}")
    return SpawnResult(children=made)


spawn_spec = JobSpec(
    name="spawn",
    payload=SpawnPayload,
    result=SpawnResult,
    handler=run_spawn,
    description="Test only: makes child jobs with ctx.enqueue, then may fail or sleep.",
    max_attempts=3,
    retry_backoff=0.05,
)
