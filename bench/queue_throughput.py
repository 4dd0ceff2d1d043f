"""End-to-end no-op throughput, in the same run on the same broker, worker count and machine, every contender at
the same log level (WARNING, as production runs; `--log-level INFO` for the labelled variant), with task events on
(as Flower needs) and the same prefetch:
- bare Celery: `send_task` in a loop → worker, no database, no result;
- the hand-rolled app Conveyor replaces: Flask under the same gunicorn settings as Conveyor's API, POST → INSERT +
  commit + `apply_async`, the task marks the row done (bench/bare_flask.py);
- Conveyor: HTTP submit → ledger → worker → succeeded row.
Single submits from 8 client connections, and batches of 1,000; jobs/s and CPU ms per job by role for each.

This VM's speed moves by tens of percent between minutes, so a run is `--rounds` rounds, each measuring every
contender one after another on fresh databases; each ratio is taken within its round and the medians are reported.

    .venv/bin/python bench/queue_throughput.py [--jobs 20000] [--rounds 3] [--concurrency 2]
        [--backends embedded,services]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bare_celery import COUNTER_KEY, TABLE, make_bare_app
from bench.bare_flask import start_bare_flask
from bench.cpu import CpuMeter, Selector, group, named
from core.db import make_engine
from core.models import ACTIVE, Job, JobEvent
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
    """The poll while a run drains: it reads only the unfinished rows (the partial index ix_jobs_tenant_active, by
    its predicate), where counting the succeeded ones read a growing share of the ledger 20 times a second, on the
    machine being measured."""
    with cluster.session() as session:
        return int(session.scalar(select(func.count()).select_from(Job).where(text(ACTIVE))) or 0)


def republished(cluster: Cluster) -> int:
    """Messages the reconciler sent again: each one a duplicate delivery unless the first was really lost."""
    with cluster.session() as session:
        query = select(func.count()).select_from(JobEvent).where(JobEvent.kind == "republished")
        return int(session.scalar(query) or 0)


def submit_all(port: int, prefix: str, jobs: int, *, batch: bool, headers: dict[str, str]) -> None:
    """POST `jobs` echo jobs to `prefix`/jobs from 8 connections at once, or in batches of 1,000 to `prefix`/jobs:batch
    from 2, each thread on its own keep-alive connection: the standard library's http.client, as bench/latency.py
    explains (requests costs ~1 ms of CPU per call, on the two cores the servers use)."""
    local = threading.local()

    def post(path: str, body: dict[str, object]) -> None:
        if not hasattr(local, "http"):
            local.http = HTTPConnection("127.0.0.1", port, timeout=120)
        http: HTTPConnection = local.http
        http.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **headers})
        response = http.getresponse()
        answer = response.read()
        if response.status not in (200, 202, 207):
            raise SystemExit(f"POST {path}: {response.status} {answer[:300]!r}")

    def submit(i: int) -> None:
        post(f"{prefix}/jobs", {"type": "echo", "payload": {"message": str(i)}})

    def submit_batch(start: int) -> None:
        items = [{"type": "echo", "payload": {"message": str(i)}} for i in range(start, min(start + 1000, jobs))]
        post(f"{prefix}/jobs:batch", {"jobs": items})

    if batch:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(submit_batch, range(0, jobs, 1000)))
    else:
        with ThreadPoolExecutor(SUBMIT_CONNECTIONS) as pool:
            list(pool.map(submit, range(jobs)))


def drain(left: Callable[[], int]) -> None:
    """Until `left()` is 0: a long wait while much is left (the poll costs CPU on the machine being measured too)."""
    while remaining := left():
        time.sleep(min(1.0, max(0.05, remaining / 5000)))


def conveyor_run(cluster: Cluster, jobs: int, meter: CpuMeter, *, batch: bool) -> tuple[float, int, dict[str, float]]:
    """Submit `jobs` echo jobs (8 concurrent single POSTs, or batches of 1,000) and wait for every success."""
    since, republished_before = datetime.now(UTC), republished(cluster)
    meter.start()
    started = time.perf_counter()
    submit_all(cluster.port, "/v1", jobs, batch=batch, headers=cluster.auth)
    submitted = time.perf_counter()
    drain(lambda: unfinished(cluster))
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


def start_bare_worker(
    directory: Path, broker_url: str, counter_url: str, concurrency: int, log_level: str, database_url: str = ""
) -> subprocess.Popen[bytes]:
    """The baselines' Celery worker (prefork, task events on, as Conveyor's), in a process group of its own."""
    env = {**os.environ, "BENCH_BROKER_URL": broker_url, "BENCH_COUNTER_URL": counter_url,
           "BENCH_DATABASE_URL": database_url}  # fmt: skip
    command = [sys.executable, "-m", "celery", "-A", "bench.bare_celery", "worker", "-c", str(concurrency),
               "-Q", "bare", "-n", "bare@%h", "-E", "--loglevel", log_level]  # fmt: skip
    log = open(directory / "bare.log", "ab")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def bare_celery_run(
    directory: Path, broker_url: str, counter_url: str, jobs: int, concurrency: int, log_level: str
) -> tuple[float, dict[str, float]]:
    worker = start_bare_worker(directory, broker_url, counter_url, concurrency, log_level)
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


def hand_rolled_run(
    directory: Path, database_url: str, broker_url: str, redis_url: str, jobs: int, concurrency: int,
    api_workers: int, log_level: str,
) -> dict[str, tuple[float, dict[str, float]]]:  # fmt: skip
    """The hand-rolled Flask + Celery + SQL app, single submits then batches: {mode: (jobs/s, CPU ms per job)}."""
    worker = start_bare_worker(directory, broker_url, redis_url, concurrency, log_level, database_url)
    api, port = start_bare_flask(directory, database_url, broker_url, redis_url, workers=api_workers,
                                 log_level=log_level.lower())  # fmt: skip
    engine = make_engine(database_url)
    roles = {"submit": group(api.pid), "worker": group(worker.pid), "redis": named("redis-server")}
    if database_url.startswith("postgresql"):
        roles["postgres"] = named(f" {database_url.rsplit('/', 1)[1]} ")
    meter = CpuMeter(roles)

    def left() -> int:
        with engine.connect() as connection:
            return int(connection.execute(text(f"SELECT count(*) FROM {TABLE} WHERE status <> 'done'")).scalar_one())  # noqa: S608

    def run(count: int, *, batch: bool, quiet: bool = False) -> tuple[float, dict[str, float]]:
        with engine.begin() as connection:
            connection.execute(text(f"DELETE FROM {TABLE}"))  # noqa: S608
        meter.start()
        started = time.perf_counter()
        submit_all(port, "", count, batch=batch, headers={})
        submitted = time.perf_counter()
        drain(left)
        end = time.perf_counter()
        with engine.connect() as connection:
            done = connection.execute(text(f"SELECT count(*) FROM {TABLE} WHERE status = 'done'")).scalar_one()  # noqa: S608
        assert done == count, f"hand-rolled: {done} of {count} jobs done"
        if not quiet:
            print(f"  hand-rolled ({'batch' if batch else 'single'}): submit {count / (submitted - started):.0f}/s, "
                  f"end to end {count / (end - started):.0f}/s")  # fmt: skip
        return count / (end - started), meter.per_job(count)

    try:
        run(10, batch=False, quiet=True)  # warm-up: the worker is consuming, the pools are open
        return {"single": run(jobs, batch=False), "batch": run(jobs, batch=True)}
    finally:
        engine.dispose()
        for process in (api, worker):
            os.killpg(process.pid, 15)
            process.wait(30)


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


RATIOS = ("ratio_single", "ratio_single_vs_hand_rolled", "ratio_batch", "ratio_batch_vs_hand_rolled")
RATES = ("bare_celery_jobs_per_s", "hand_rolled_single_jobs_per_s", "hand_rolled_batch_jobs_per_s",
         "conveyor_single_jobs_per_s", "conveyor_batch_jobs_per_s")  # fmt: skip


def run_backend(
    kind: str, jobs: int, concurrency: int, api_workers: int, log_level: str, rounds: int
) -> dict[str, Any]:
    """`rounds` rounds; the medians of each rate and each within-round ratio, every round's figures beside them."""
    measured = []
    for number in range(1, rounds + 1):
        print(f"{kind}, round {number} of {rounds}")
        measured.append(run_round(kind, jobs, concurrency, api_workers, log_level))
    medians = {key: round(statistics.median(r[key] for r in measured), 3) for key in RATIOS + RATES}
    republished = {mode: sum(r["republished"][mode] for r in measured) for mode in ("single", "batch")}
    return {**measured[0], **medians, "republished": republished, "rounds": measured}


def run_round(kind: str, jobs: int, concurrency: int, api_workers: int, log_level: str) -> dict[str, Any]:
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-{kind}-")))
        database_url, broker_url, counter_url = backend_urls(kind, directory, stack)
        bare, bare_cpu = bare_celery_run(directory, broker_url, counter_url, jobs, concurrency, log_level)
        # the hand-rolled app's table in a database of its own: SQLite beside Conveyor's, or another PostgreSQL one
        hand_url = (stack.enter_context(postgres_database()) if kind == "services"
                    else f"sqlite:///{directory / 'hand-rolled.db'}")  # fmt: skip
        hand = hand_rolled_run(directory, hand_url, broker_url, counter_url, jobs, concurrency, api_workers, log_level)
        conveyor = bench_cluster(directory, database_url, broker_url, worker_concurrency=str(concurrency),
                                 api_workers=str(api_workers), log_level=log_level)  # fmt: skip
        cluster, meter = stack.enter_context(conveyor)
        single, single_republished, single_cpu = conveyor_run(cluster, jobs, meter, batch=False)
        batched, batch_republished, batch_cpu = conveyor_run(cluster, jobs, meter, batch=True)
    (hand_single, hand_single_cpu), (hand_batch, hand_batch_cpu) = hand["single"], hand["batch"]
    return {"backend": kind, "jobs": jobs, "worker_processes": concurrency, "api_processes": api_workers,
            "log_level": log_level, "bare_celery_jobs_per_s": round(bare, 1),
            "hand_rolled_single_jobs_per_s": round(hand_single, 1),
            "hand_rolled_batch_jobs_per_s": round(hand_batch, 1),
            "conveyor_single_jobs_per_s": round(single, 1), "ratio_single": round(single / bare, 3),
            "ratio_single_vs_hand_rolled": round(single / hand_single, 3),
            "conveyor_batch_jobs_per_s": round(batched, 1), "ratio_batch": round(batched / bare, 3),
            "ratio_batch_vs_hand_rolled": round(batched / hand_batch, 3),
            "republished": {"single": single_republished, "batch": batch_republished},
            "cpu_ms_per_job": {"bare_celery": bare_cpu, "hand_rolled_single": hand_single_cpu,
                               "hand_rolled_batch": hand_batch_cpu, "single": single_cpu,
                               "batch": batch_cpu}}  # fmt: skip


@contextmanager
def bench_cluster(
    directory: Path, database_url: str, broker_url: str, **settings: str
) -> Iterator[tuple[Cluster, CpuMeter]]:
    """A Conveyor deployment as the benchmarks run it, started, ready and its workers consuming, with a CPU meter of
    its roles; closed on exit. Production's lease and re-publish delay (the test harness shortens both): a 20,000-job
    backlog may wait longer than the harness's 10 s, and each re-published message is a duplicate delivery to skip."""
    directory.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(directory, database_url, broker_url, lease_seconds="30", reconcile_interval="2",
                      republish_after="60", **settings)  # fmt: skip
    try:
        cluster.start()
        cluster.wait_ready()
        cluster.wait_workers()
        yield cluster, CpuMeter(conveyor_roles(cluster, database_url))
    finally:
        cluster.close()


def conveyor_roles(cluster: Cluster, database_url: str) -> dict[str, Selector]:
    """Conveyor's processes by role; on PostgreSQL also the run database's backends (by their process title)."""
    roles = {"submit": group(cluster.procs["api"].pid), "worker": group(cluster.procs["worker"].pid),
             "maintenance": group(cluster.procs["maintenance"].pid), "redis": named("redis-server")}  # fmt: skip
    if database_url.startswith("postgresql"):
        roles["postgres"] = named(f" {database_url.rsplit('/', 1)[1]} ")
    return roles


def print_rounds(rows: list[dict[str, Any]]) -> None:
    """Every round's ratios: how far apart the rounds were."""
    print(f"{'each round':<20}" + "".join(f"{key.removeprefix('ratio_'):>26}" for key in RATIOS))
    for r in rows:
        cells = "".join(f"{' / '.join(str(one[key]) for one in r['rounds']):>26}" for key in RATIOS)
        print(f"{r['backend'] + ' ' + str(r['worker_processes']) + ' procs':<20}{cells}")


def print_cpu(rows: list[dict[str, Any]]) -> None:
    """CPU ms per job by role (submit: bare Celery's client, Conveyor's API processes), of the first round."""
    roles = ["submit", "worker", "maintenance", "redis", "postgres"]
    print(f"{'CPU ms/job':<30}" + "".join(f"{role:>12}" for role in roles) + f"{'total':>9}")
    for r in rows:
        for contender, cpu in r["cpu_ms_per_job"].items():
            cells = "".join(f"{cpu[role]:>12}" if role in cpu else f"{'':>12}" for role in roles)
            print(f"{r['backend'] + ' ' + contender:<30}{cells}{round(sum(cpu.values()), 2):>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3, help="the medians of this many rounds are reported")
    parser.add_argument("--concurrency", default="2", help="worker processes; a comma list measures scaling (1,2,4)")
    parser.add_argument("--backends", default="embedded,services")
    parser.add_argument("--api-workers", type=int, default=1,
                        help="gunicorn processes (8 threads each): on two cores shared with the workers, one submits "
                        "single jobs fastest, its concurrent requests sharing commits (docs/adr/0006)")  # fmt: skip
    parser.add_argument("--log-level", default="WARNING", choices=["WARNING", "INFO"],
                        help="every contender's (WARNING: as production runs; INFO: the labelled variant)")  # fmt: skip
    parser.add_argument("--name", default="queue_throughput", help="file name under bench/results/")
    args = parser.parse_args()
    rows = [
        run_backend(kind, args.jobs, int(k), args.api_workers, args.log_level, args.rounds)
        for kind in args.backends.split(",")
        for k in args.concurrency.split(",")
    ]
    print(f"every contender at log level {args.log_level}; jobs/s end to end, and Conveyor's ratios to bare Celery "
          f"and to the hand-rolled app: medians of {args.rounds} rounds (each ratio within its round)")  # fmt: skip
    header = f"{'backend':<10} {'jobs':>6} {'procs':>5} {'celery/s':>9} {'hand 1/s':>9} {'hand N/s':>9} "
    print(header + f"{'single/s':>9} {'/celery':>8} {'/hand':>6} {'batch/s':>8} {'/celery':>8} {'/hand':>6}")
    for r in rows:
        print(f"{r['backend']:<10} {r['jobs']:>6} {r['worker_processes']:>5} {r['bare_celery_jobs_per_s']:>9} "
              f"{r['hand_rolled_single_jobs_per_s']:>9} {r['hand_rolled_batch_jobs_per_s']:>9} "
              f"{r['conveyor_single_jobs_per_s']:>9} {r['ratio_single']:>8} {r['ratio_single_vs_hand_rolled']:>6} "
              f"{r['conveyor_batch_jobs_per_s']:>8} {r['ratio_batch']:>8} "
              f"{r['ratio_batch_vs_hand_rolled']:>6}")  # fmt: skip
    print_rounds(rows)
    print_cpu(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": args.name, **machine(), "results": rows}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
