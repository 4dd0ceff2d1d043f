"""The counted ledger of one fault scenario: what was accepted (client log) against what the database and the
execution log say happened. Written as one JSON record per scenario."""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, func, select

from core.models import Job, JobEvent
from core.status import TERMINAL

RESULTS_DIR = Path(os.environ.get("CONVEYOR_CHAOS_RESULTS", Path(__file__).resolve().parents[2] / "var" / "chaos"))

test_metadata = MetaData()
test_effects = Table(  # deliberately without a unique constraint: duplicates must be visible, not prevented
    "test_effects",
    test_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(36), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("pid", Integer, nullable=False),
)


@dataclass
class ClientLog:
    """What the client saw: the ids it got back with 200/202, and every other answer."""

    accepted: list[str] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)


@dataclass
class Ledger:
    scenario: str
    backend: str
    submitted: int
    completed: int
    failed_visible: int
    cancelled: int
    lost: int
    stuck: int
    executions: int
    duplicate_executions_expected: int
    duplicate_executions_unexpected: int
    duplicate_effects: int
    max_concurrent_per_job: int
    recovery_seconds: float | None
    refused_requests: int
    notes: dict[str, Any] = field(default_factory=dict)

    def write(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.scenario}-{self.backend}.json"
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    def assert_no_loss_no_duplicates(self) -> None:
        """The promise of docs/design.md §1, for every scenario."""
        assert self.lost == 0, f"{self.lost} accepted jobs not finished visibly: {self}"
        assert self.stuck == 0, self
        assert self.duplicate_effects == 0, self
        assert self.duplicate_executions_unexpected == 0, self
        assert self.max_concurrent_per_job <= 1, self


def read_executions(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Per job, the execution intervals from the append-only log: start, last sign of life, ended or not."""
    path = data_dir / "executions.log"
    runs: dict[tuple[str, int, int], dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            key = (entry["job"], entry["attempt"], entry["pid"])
            run = runs.setdefault(key, {"start": entry["t"], "last": entry["t"], "ended": False})
            run["last"] = max(run["last"], entry["t"])
            run["ended"] |= entry["event"] == "end"
    per_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (job, _attempt, _pid), run in runs.items():
        per_job[job].append(run)
    return per_job


def max_overlap(runs: list[dict[str, Any]]) -> int:
    points = sorted([(r["start"], 1) for r in runs] + [(r["last"], -1) for r in runs], key=lambda p: (p[0], p[1]))
    level = peak = 0
    for _, step in points:
        level += step
        peak = max(peak, level)
    return peak


def compute_ledger(
    scenario: str,
    backend: str,
    engine: Engine,
    data_dir: Path,
    client: ClientLog,
    *,
    fault_ended_at: datetime | None = None,
    notes: dict[str, Any] | None = None,
) -> Ledger:
    ids = [uuid.UUID(i) for i in client.accepted]
    with engine.connect() as conn:
        jobs = {str(r.id): r for r in conn.execute(select(Job).where(Job.id.in_(ids)))} if ids else {}
        kinds: dict[str, Counter[str]] = defaultdict(Counter)
        for job_id, kind in conn.execute(select(JobEvent.job_id, JobEvent.kind).where(JobEvent.job_id.in_(ids))):
            kinds[str(job_id)][kind] += 1
        effects = dict(conn.execute(select(test_effects.c.job_id, func.count()).group_by(test_effects.c.job_id)).all())
    executions = read_executions(data_dir)
    statuses = Counter(jobs[i].status for i in client.accepted if i in jobs)
    failed_visible = sum(1 for i in client.accepted if i in jobs and jobs[i].status == "failed" and jobs[i].error)
    finished = statuses["succeeded"] + failed_visible + statuses["cancelled"]
    expected = unexpected = 0
    for job_id in client.accepted:
        claims = kinds[job_id]["running"]
        causes = kinds[job_id]["lease_expired"] + kinds[job_id]["retrying"]
        extra = max(claims - 1, 0)
        expected += min(extra, causes)
        unexpected += extra - min(extra, causes) + max(len(executions.get(job_id, [])) - claims, 0)
    finish_times = [j.finished_at for j in jobs.values() if j.finished_at]
    recovery = None
    if fault_ended_at and finish_times:
        recovery = round(max(0.0, (max(finish_times) - fault_ended_at).total_seconds()), 2)
    return Ledger(
        scenario=scenario,
        backend=backend,
        submitted=len(client.accepted),
        completed=statuses["succeeded"],
        failed_visible=failed_visible,
        cancelled=statuses["cancelled"],
        lost=len(client.accepted) - finished,
        stuck=sum(1 for j in jobs.values() if j.status not in {s.value for s in TERMINAL}),
        executions=sum(len(executions.get(i, [])) for i in client.accepted),
        duplicate_executions_expected=expected,
        duplicate_executions_unexpected=unexpected,
        duplicate_effects=sum(max(count - 1, 0) for count in effects.values()),
        max_concurrent_per_job=max((max_overlap(runs) for runs in executions.values()), default=0),
        recovery_seconds=recovery,
        refused_requests=len(client.refused),
        notes=notes or {},
    )
