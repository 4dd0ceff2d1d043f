"""Fault-injection fixtures: a fresh deployment per scenario with a broker this test owns (and may break), the
client log, the counted ledger, and a summary table of every scenario run in this session."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from core.types import utcnow
from tests.e2e.harness import TERMINAL, Cluster, free_port
from tests.faults.ledger import RESULTS_DIR, ClientLog, Ledger, compute_ledger, test_metadata
from tests.faults.proxy import TCPProxy
from tests.support.backends import PostgresServer, RedisServer

WRITTEN: list[Path] = []


@dataclass
class Scenario:
    name: str
    backend: str
    cluster: Cluster
    redis: RedisServer
    proxy: TCPProxy | None
    postgres: PostgresServer | None = None
    client: ClientLog = field(default_factory=ClientLog)
    fault_ended_at: datetime | None = None

    def submit_many(self, count: int, job_type: str = "effect", payload: dict[str, Any] | None = None,
                    connections: int = 8, **fields: Any) -> list[str]:  # fmt: skip
        body = {"type": job_type, "payload": payload or {}, **fields}
        local: dict[int, requests.Session] = {}

        def one(_: int) -> tuple[int, str | None]:
            import threading

            http = local.setdefault(threading.get_ident(), self.cluster.new_http())
            response = http.post(f"{self.cluster.base}/v1/jobs", json=body, timeout=60)
            return response.status_code, response.json().get("id") if response.status_code in (200, 202) else None

        with ThreadPoolExecutor(connections) as pool:
            answers = list(pool.map(one, range(count)))
        ids = [job_id for status, job_id in answers if job_id]
        self.client.accepted += ids
        self.client.refused += [status for status, job_id in answers if not job_id]
        return ids

    def fault_over(self) -> None:
        self.fault_ended_at = utcnow()

    def drain(self, timeout: float = 120) -> None:
        """Wait until every accepted job is finished, or the bounded deadline passes (the ledger counts the rest)."""
        deadline = time.monotonic() + timeout
        pending = set(self.client.accepted)
        while pending and time.monotonic() < deadline:
            with self.cluster.engine.connect() as conn:
                from sqlalchemy import select

                from core.models import Job

                rows = conn.execute(select(Job.id, Job.status).where(Job.status.in_(list(TERMINAL)))).all()
            pending -= {str(job_id) for job_id, _ in rows}
            time.sleep(0.25)

    def ledger(self, **notes: Any) -> Ledger:
        ledger = compute_ledger(self.name, self.backend, self.cluster.engine, self.cluster.directory, self.client,
                                fault_ended_at=self.fault_ended_at, notes=notes)  # fmt: skip
        WRITTEN.append(ledger.write())
        return ledger


@pytest.fixture
def scenario(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Scenario]]:
    """Build a running deployment for one scenario on servers the test owns: a private PostgreSQL and a private
    Redis on random loopback ports (optionally behind a TCP proxy, optionally with AOF), or the embedded SQLite
    backend with that Redis. The machine's shared services are never touched."""
    with ExitStack() as stack:

        def build(name: str, backend: str = "services", *, aof: bool = False, proxy: bool = False,
                  start: tuple[str, ...] = Cluster.ROLES, **settings: str) -> Scenario:  # fmt: skip
            redis = RedisServer(tmp_path / "broker", port=free_port(), aof=aof)
            redis.start()
            stack.callback(redis.stop)
            tcp_proxy = None
            broker_url = redis.url
            if proxy:
                tcp_proxy = TCPProxy(redis.port or 0).start()
                stack.callback(tcp_proxy.stop)
                broker_url = f"redis://127.0.0.1:{tcp_proxy.port}/0"
            postgres = None
            if backend == "services":  # a private server on a random port: the test may stop it, never the machine's
                postgres = PostgresServer(free_port())
                postgres.start()
                stack.callback(postgres.remove)
                database_url = postgres.url
            else:
                database_url = f"sqlite:///{tmp_path / 'conveyor.db'}"
            cluster = Cluster(tmp_path, database_url, broker_url, **settings)
            stack.callback(cluster.close)
            test_metadata.create_all(cluster.engine)
            cluster.start(*start)
            cluster.wait_ready()
            if "worker" in start:
                cluster.wait_workers()
            return Scenario(
                name=name, backend=backend, cluster=cluster, redis=redis, proxy=tcp_proxy, postgres=postgres
            )

        yield build


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not WRITTEN:
        return
    columns = ["scenario", "backend", "submitted", "completed", "failed_visible", "cancelled", "lost", "stuck",
               "duplicate_executions_expected", "duplicate_executions_unexpected", "duplicate_effects",
               "max_concurrent_per_job", "recovery_seconds"]  # fmt: skip
    short = ["scenario", "backend", "sub", "ok", "failed", "cancel", "lost", "stuck", "dup exp", "dup unexp",
             "dup eff", "max conc", "recovery s"]  # fmt: skip
    rows = [json.loads(p.read_text()) for p in WRITTEN]
    table = [short] + [[str(r[c]) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(short))]
    terminalreporter.section("fault-injection ledger")
    for row in table:
        terminalreporter.write_line("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    markdown = ["| " + " | ".join(row) + " |" for row in table]
    markdown.insert(1, "|" + "---|" * len(short))
    (RESULTS_DIR / "ledger.md").write_text("\n".join(markdown) + "\n")
    terminalreporter.write_line(f"records: {RESULTS_DIR} (one JSON per scenario, ledger.md for the table)")
