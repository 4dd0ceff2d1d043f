"""End-to-end no-op throughput: Conveyor (HTTP submit → worker → succeeded row) vs bare Celery (apply_async →
worker, no database, no result) on the same broker, worker count and machine, in the same run.

    .venv/bin/python bench/queue_throughput.py [--jobs 2000] [--concurrency 2] [--backends embedded,services]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bare_celery import COUNTER_KEY, make_bare_app
from bench.cpu import CpuMeter, Selector, group, named
from core.models import Job, JobEvent
from tests.e2e.harness import ROOT, Cluster
from tests.support.backends import RedisServer, postgres_database, service_redis_db

RESULTS = ROOT / "bench" / "results"
SUBMIT_CONNECTIONS = 8


def succeeded(cluster: Cluster, since: datetime) -> int:
    """The run's succeeded jobs: made since it began (older ones may be pruned meanwhile, bench/prune.py)."""
    with cluster.session() as session:
        query = select(func.count()).select_from(Job).where(Job.status == "succeeded", Job.created_at >= since)
        return int(session.scalar(query) or 0)


def unfinished(cluster: Cluster) -> int:
    """The poll while a run drains: it reads only the unfinished rows (an index range on status), where counting the
    succeeded ones read a growing share of the ledger 20 times a second, on the machine being measured."""
    with cluster.session() as session:
        waiting = ["scheduled", "queued", "running", "retrying"]
        return int(session.scalar(select(func.count()).select_from(Job).where(Job.status.in_(waiting))) or 0)


def republished(cluster: Cluster) -> int:
    """Messages the reconciler sent again: each one a duplicate delivery unless the first was really lost."""
    with cluster.session() as session:
        query = select(func.count()).select_from(JobEvent).where(JobEvent.kind == "republished")
        return int(session.scalar(query) or 0)


def conveyor_run(cluster: Cluster, jobs: int, meter: CpuMeter, *, batch: bool) -> tuple[float, int, dict[str, float]]:
    """Submit `jobs` echo jobs (8 concurrent single POSTs, or batches of 1,000) and wait for every success."""
    since, republished_before = datetime.now(UTC), republished(cluster)
    meter.start()
    local = threading.local()

    def post(path: str, body: dict[str, object]) -> None:
        """On the client thread's own keep-alive connection: the standard library's http.client, as bench/latency.py
        explains (requests costs ~1 ms of CPU per call, on the two cores the servers use)."""
        if not hasattr(local, "http"):
            local.http = HTTPConnection("127.0.0.1", cluster.port, timeout=120)
        http: HTTPConnection = local.http
        http.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **cluster.auth})
        response = http.getresponse()
        answer = response.read()
        if response.status not in (200, 202, 207):
            raise SystemExit(f"POST {path}: {response.status} {answer[:300]!r}")

    def submit(i: int) -> None:
        post("/v1/jobs", {"type": "echo", "payload": {"message": str(i)}})

    def submit_batch(start: int) -> None:
        items = [{"type": "echo", "payload": {"message": str(i)}} for i in range(start, min(start + 1000, jobs))]
        post("/v1/jobs:batch", {"jobs": items})

    started = time.perf_counter()
    if batch:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(submit_batch, range(0, jobs, 1000)))
    else:
        with ThreadPoolExecutor(SUBMIT_CONNECTIONS) as pool:
            list(pool.map(submit, range(jobs)))
    submitted = time.perf_counter()
    while remaining := unfinished(cluster):
        time.sleep(min(1.0, max(0.05, remaining / 5000)))  # a long wait while much is left: the poll costs too
    end = time.perf_counter()
    cpu = meter.per_job(jobs)
    assert succeeded(cluster, since) == jobs, "every job of the run must have succeeded"
    mode = "batch" if batch else "single"
    sent_again = republished(cluster) - republished_before
    print(
        f"  conveyor ({mode}): submit {jobs / (submitted - started):.0f}/s, end to end {jobs / (end - started):.0f}/s,"
        f" republished {sent_again}"
    )
    return jobs / (end - started), sent_again, cpu


def bare_celery_run(
    directory: Path, broker_url: str, counter_url: str, jobs: int, concurrency: int
) -> tuple[float, dict[str, float]]:
    env = {**os.environ, "BENCH_BROKER_URL": broker_url, "BENCH_COUNTER_URL": counter_url}
    command = [sys.executable, "-m", "celery", "-A", "bench.bare_celery", "worker", "-c", str(concurrency),
               "-Q", "bare", "-n", "bare@%h", "-E", "--loglevel", "INFO"]  # fmt: skip
    log = open(directory / "bare.log", "wb")
    worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    app, counter = make_bare_app(broker_url, counter_url)
    try:
        counter.set(COUNTER_KEY, 0)
        app.send_task("bench.noop", args=[0], queue="bare")  # warm-up: the worker is consuming
        while int(counter.get(COUNTER_KEY) or 0) < 1:
            time.sleep(0.05)
        counter.set(COUNTER_KEY, 0)
        meter = CpuMeter({"worker": group(worker.pid), "redis": named("redis-server")})
        meter.start()
        started, client_started = time.perf_counter(), time.thread_time()
        for i in range(jobs):
            app.send_task("bench.noop", args=[i], queue="bare")
        client = time.thread_time() - client_started  # the submit side: this thread's send_task calls
        while int(counter.get(COUNTER_KEY) or 0) < jobs:
            time.sleep(0.02)
        rate = jobs / (time.perf_counter() - started)
        return rate, meter.per_job(jobs, submit=client)
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(30)


def backend_urls(kind: str, directory: Path, stack: ExitStack) -> tuple[str, str, str]:
    """(database URL, broker URL, Redis URL for the baseline's counter) of a backend this run owns."""
    if kind == "embedded":
        broker = RedisServer(directory / "broker")
        broker.start()
        stack.callback(broker.stop)
        return f"sqlite:///{directory / 'conveyor.db'}", broker.url, f"unix://{broker.socket}"
    broker_url = stack.enter_context(service_redis_db())
    return stack.enter_context(postgres_database()), broker_url, broker_url


def machine() -> dict[str, object]:
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
    }


def run_backend(kind: str, jobs: int, concurrency: int, api_workers: int) -> dict[str, object]:
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-{kind}-")))
        database_url, broker_url, counter_url = backend_urls(kind, directory, stack)
        bare, bare_cpu = bare_celery_run(directory, broker_url, counter_url, jobs, concurrency)
        # Production's lease and re-publish delay (the test harness shortens both): a 20,000-job backlog may wait
        # longer than the harness's 10 s, and each re-published message is a duplicate delivery to skip.
        cluster = Cluster(directory, database_url, broker_url, worker_concurrency=str(concurrency),
                          lease_seconds="30", reconcile_interval="2", republish_after="60",
                          api_workers=str(api_workers))  # fmt: skip
        stack.callback(cluster.close)
        cluster.start()
        cluster.wait_ready()
        cluster.wait_workers()
        meter = CpuMeter(conveyor_roles(cluster, database_url))
        single, single_republished, single_cpu = conveyor_run(cluster, jobs, meter, batch=False)
        batched, batch_republished, batch_cpu = conveyor_run(cluster, jobs, meter, batch=True)
    return {"backend": kind, "jobs": jobs, "worker_processes": concurrency, "api_processes": api_workers,
            "bare_celery_jobs_per_s": round(bare, 1),
            "conveyor_single_jobs_per_s": round(single, 1), "ratio_single": round(single / bare, 3),
            "conveyor_batch_jobs_per_s": round(batched, 1), "ratio_batch": round(batched / bare, 3),
            "republished": {"single": single_republished, "batch": batch_republished},
            "cpu_ms_per_job": {"bare_celery": bare_cpu, "single": single_cpu, "batch": batch_cpu}}  # fmt: skip


def conveyor_roles(cluster: Cluster, database_url: str) -> dict[str, Selector]:
    """Conveyor's processes by role; on PostgreSQL also the run database's backends (by their process title)."""
    roles = {"submit": group(cluster.procs["api"].pid), "worker": group(cluster.procs["worker"].pid),
             "maintenance": group(cluster.procs["maintenance"].pid), "redis": named("redis-server")}  # fmt: skip
    if database_url.startswith("postgresql"):
        roles["postgres"] = named(f" {database_url.rsplit('/', 1)[1]} ")
    return roles


def print_cpu(rows: list[dict[str, Any]]) -> None:
    """CPU ms per job by role (submit: bare Celery's client, Conveyor's API processes)."""
    roles = ["submit", "worker", "maintenance", "redis", "postgres"]
    print(f"{'CPU ms/job':<22}" + "".join(f"{role:>12}" for role in roles) + f"{'total':>9}")
    for r in rows:
        for contender, cpu in r["cpu_ms_per_job"].items():
            cells = "".join(f"{cpu[role]:>12}" if role in cpu else f"{'':>12}" for role in roles)
            print(f"{r['backend'] + ' ' + contender:<22}{cells}{round(sum(cpu.values()), 2):>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--concurrency", default="2", help="worker processes; a comma list measures scaling (1,2,4)")
    parser.add_argument("--backends", default="embedded,services")
    parser.add_argument("--api-workers", type=int, default=1,
                        help="gunicorn processes (8 threads each): on two cores shared with the workers, one submits "
                        "single jobs fastest, its concurrent requests sharing commits (docs/adr/0006)")  # fmt: skip
    parser.add_argument("--name", default="queue_throughput", help="file name under bench/results/")
    args = parser.parse_args()
    rows = [
        run_backend(kind, args.jobs, int(k), args.api_workers)
        for kind in args.backends.split(",")
        for k in args.concurrency.split(",")
    ]
    header = f"{'backend':<10} {'jobs':>6} {'procs':>5} {'bare celery/s':>14} {'single/s':>9} {'ratio':>6} "
    print(header + f"{'batch/s':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['backend']:<10} {r['jobs']:>6} {r['worker_processes']:>5} {r['bare_celery_jobs_per_s']:>14} "
              f"{r['conveyor_single_jobs_per_s']:>9} {r['ratio_single']:>6} {r['conveyor_batch_jobs_per_s']:>8} "
              f"{r['ratio_batch']:>6}")  # fmt: skip
    print_cpu(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": args.name, **machine(), "results": rows}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
