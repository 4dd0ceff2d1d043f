"""A backlog of a million jobs (issue 22, item 1, second part): submitted through the batch API (batches of 1,000
from 2 connections) while 2 worker processes drain them, then drained to the end. The submits outrun the workers, so
the backlog grows to most of the run's jobs and then shrinks to nothing; the drain rate must hold all the way.

Measured in the same run:
- the drain rate over time, from each job's `finished_at` (read after the run, so nothing polls the ledger hard while
  it drains): jobs/s in the first and the last tenth of the jobs, and per 30 s;
- the broker's memory (Redis `used_memory`) and its queue's length, sampled every 5 s;
- a reconciler tick and its read of the whole backlog, timed in this process when the submits end (the backlog's peak);
- that every job ran once: as many `running` events as jobs, no job with a second attempt, every job succeeded.

Target: the last tenth's rate >= 0.9x the first tenth's; no job run twice, none lost.

    .venv/bin/python bench/backlog.py [--backend services|embedded] [--jobs 1000000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ledger_scale import KEEP_EVERY_JOB, tick_ms
from bench.queue_throughput import RESULTS, backend_urls, bench_cluster, machine, submit_all, unfinished
from core.migrate import upgrade_database
from core.models import Job, JobEvent
from core.types import utcnow
from tests.e2e.harness import Cluster

SAMPLE_SECONDS = 5
WINDOW_SECONDS = 30


class BrokerSampler(threading.Thread):
    """Every SAMPLE_SECONDS: seconds since start, the broker's used memory (MB) and its default queue's length."""

    def __init__(self, broker_url: str) -> None:
        super().__init__(daemon=True)
        # kombu's redis+socket:// is redis-py's unix://
        self.client = redis.Redis.from_url(broker_url.replace("redis+socket://", "unix://", 1))
        self.samples: list[tuple[float, float, int]] = []
        self.stopped = threading.Event()
        self.started_at = time.perf_counter()

    def run(self) -> None:
        while not self.stopped.wait(SAMPLE_SECONDS):
            used = int(self.client.info("memory")["used_memory"])  # type: ignore[index]
            depth = int(self.client.llen("default"))  # type: ignore[arg-type]
            self.samples.append((round(time.perf_counter() - self.started_at, 1), round(used / 2**20, 1), depth))


def wait_drained(cluster: Cluster) -> None:
    """Until no job is unfinished; a count of the backlog every few seconds (it reads the backlog's index)."""
    while unfinished(cluster):
        time.sleep(SAMPLE_SECONDS)


def finish_times(cluster: Cluster, since: datetime) -> list[datetime]:
    with cluster.session() as session:
        query = select(Job.finished_at).where(Job.status == "succeeded", Job.created_at >= since)
        return sorted(session.scalars(query))  # type: ignore[arg-type]


def ran_once(cluster: Cluster, jobs: int, since: datetime) -> dict[str, int]:
    """From the ledger, of the jobs the run made (not the cluster's readiness check): how many succeeded, how many
    attempts started, how many jobs took a second attempt."""
    made = Job.created_at >= since
    with cluster.session() as session:
        succeeded = session.scalar(select(func.count()).select_from(Job).where(made, Job.status == "succeeded"))
        started = session.scalar(
            select(func.count()).select_from(JobEvent).join(Job, Job.id == JobEvent.job_id)
            .where(made, JobEvent.kind == "running")
        )  # fmt: skip
        again = session.scalar(select(func.count()).select_from(Job).where(made, Job.attempt > 1))
    return {"jobs": jobs, "succeeded": int(succeeded or 0), "attempts_started": int(started or 0),
            "second_attempts": int(again or 0)}  # fmt: skip


def rate(times: list[datetime], first: int, last: int) -> float:
    """Jobs/s from the `first`-th to the `last`-th finish (0-based, in finishing order)."""
    return (last - first) / max((times[last] - times[first]).total_seconds(), 1e-6)


def per_window(times: list[datetime]) -> list[float]:
    start, counts = times[0], [0]
    for at in times:
        window = int((at - start).total_seconds() // WINDOW_SECONDS)
        counts.extend([0] * (window + 1 - len(counts)))
        counts[window] += 1
    last = (times[-1] - start).total_seconds() - (len(counts) - 1) * WINDOW_SECONDS  # the last window is partial
    spans = [WINDOW_SECONDS] * (len(counts) - 1) + [max(last, 1e-6)]
    return [round(count / span, 1) for count, span in zip(counts, spans, strict=True)]


def run(kind: str, jobs: int) -> dict[str, Any]:
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-backlog-")))
        url, broker, _counter = backend_urls(kind, directory, stack)
        upgrade_database(url)
        cluster, _meter = stack.enter_context(bench_cluster(directory / "run", url, broker, worker_concurrency="2",
                                                            api_workers="1", log_level="WARNING",
                                                            **KEEP_EVERY_JOB))  # fmt: skip
        sampler = BrokerSampler(broker)
        sampler.start()
        since, started = utcnow(), time.perf_counter()
        submit_all(cluster.port, "/v1", jobs, batch=True, headers=cluster.auth)
        submitted = time.perf_counter()
        peak = unfinished(cluster)
        tick = tick_ms(url)
        wait_drained(cluster)
        drained = time.perf_counter()
        sampler.stopped.set()
        sampler.join()
        times = finish_times(cluster, since)
        once = ran_once(cluster, jobs, since)
    tenth = len(times) // 10
    first, last = rate(times, 0, tenth), rate(times, len(times) - 1 - tenth, len(times) - 1)
    figures = {
        "backend": kind, "jobs": jobs, "submit_s": round(submitted - started, 1),
        "submit_jobs_per_s": round(jobs / (submitted - started), 1), "end_to_end_s": round(drained - started, 1),
        "end_to_end_jobs_per_s": round(jobs / (drained - started), 1), "backlog_at_submit_end": peak,
        "first_tenth_jobs_per_s": round(first, 1), "last_tenth_jobs_per_s": round(last, 1),
        "last_vs_first": round(last / first, 2), "per_30s_jobs_per_s": per_window(times),
        "broker_peak_mb": max((mb for _, mb, _ in sampler.samples), default=0.0),
        "broker_samples": sampler.samples, "reconcile_tick_at_peak": tick, "ran_once": once,
    }  # fmt: skip
    print(f"  {kind}: {jobs:,} jobs submitted in {figures['submit_s']} s ({figures['submit_jobs_per_s']}/s), "
          f"drained in {figures['end_to_end_s']} s; backlog {peak:,} when the submits ended")  # fmt: skip
    print(f"  drain: first tenth {figures['first_tenth_jobs_per_s']}/s, last tenth "
          f"{figures['last_tenth_jobs_per_s']}/s: {figures['last_vs_first']}x; broker peak "
          f"{figures['broker_peak_mb']} MB; tick at the peak {tick['p50_ms']} ms "
          f"(backlog read {tick['backlog_read_p50_ms']} ms)")  # fmt: skip
    print(f"  per 30 s: {figures['per_30s_jobs_per_s']}")
    print(f"  ledger: {once}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="services", choices=["services", "embedded"])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="a smoke run of 20,000 jobs")
    args = parser.parse_args()
    figures = run(args.backend, 20_000 if args.quick else args.jobs)
    once = figures["ran_once"]
    held = once["succeeded"] == once["attempts_started"] == once["jobs"] and once["second_attempts"] == 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"backlog_{args.backend}"
    (RESULTS / f"{name}.json").write_text(json.dumps({"benchmark": name, **machine(), **figures}, indent=2) + "\n")
    if not held:
        raise SystemExit(f"a job was lost or ran twice: {once}")


if __name__ == "__main__":
    main()
