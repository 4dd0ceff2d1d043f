"""Submit→start latency for sequential jobs on idle workers: Conveyor (POST /v1/jobs → the claim's started_at)
vs bare Celery (apply_async → the task's first line) and vs the hand-rolled Flask + Celery app (POST to a bare
Flask endpoint that INSERTs a row, commits and apply_asyncs → the task's first line), same broker, database, gunicorn
settings and worker count, one run.

The HTTP client is the standard library's keep-alive `http.client`: `requests` spends about a millisecond of its
own per call on this machine (1.9 vs 1.0 ms p50 for a bare Flask endpoint), which bare Celery's client never pays.

    .venv/bin/python bench/latency.py [--jobs 200] [--backends embedded,services]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from http.client import HTTPConnection
from pathlib import Path

import redis
from celery import Celery
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bare_celery import LATENCY_KEY, make_bare_app
from bench.bare_flask import start_bare_flask
from bench.queue_throughput import RESULTS, backend_urls, machine
from core.models import Job
from tests.e2e.harness import ROOT, Cluster


def percentiles(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    return {"p50_ms": round(statistics.median(ms), 2), "p99_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2)}


def conveyor_latency(cluster: Cluster, jobs: int) -> tuple[list[float], dict[str, float]]:
    """The samples, and the p50 of their two parts: the client to the handler (HTTP, parsing, validation; the
    row's created_at is the handler's clock) and the handler to the claim (insert, commit, publish, broker,
    worker)."""
    http = HTTPConnection("127.0.0.1", cluster.port, timeout=30)
    samples, to_handler, to_start = [], [], []
    for i in range(jobs):
        body = json.dumps({"type": "echo", "payload": {"message": str(i)}})
        sent = datetime.now(UTC)
        http.request("POST", "/v1/jobs", body=body, headers={"Content-Type": "application/json", **cluster.auth})
        response = http.getresponse()
        assert response.status == 202, response.read()
        job_id = json.loads(response.read())["id"]
        # The sample is the row's started_at (the worker's clock as it claimed), so this poll's rate does not bias
        # it; a tight poll would only take CPU from the API and worker on a small machine (bare Celery's client
        # waits in BLPOP, using none).
        while True:
            time.sleep(0.01)
            with cluster.engine.connect() as conn:
                query = select(Job.created_at, Job.started_at).where(Job.id == uuid.UUID(job_id))
                created, started = conn.execute(query).one()
            if started is not None:
                samples.append((started - sent).total_seconds())
                to_handler.append((created - sent).total_seconds())
                to_start.append((started - created).total_seconds())
                break
        time.sleep(0.02)  # idle workers between jobs
    http.close()
    parts = {"client_to_handler_p50_ms": percentiles(to_handler)["p50_ms"],
             "handler_to_start_p50_ms": percentiles(to_start)["p50_ms"]}  # fmt: skip
    return samples, parts


@contextmanager
def bare_worker(directory: Path, broker_url: str, counter_url: str) -> Iterator[None]:
    """The bare Celery worker (2 processes, queue `bare`) that answers `bench.stamp` for both baselines."""
    env = {**os.environ, "BENCH_BROKER_URL": broker_url, "BENCH_COUNTER_URL": counter_url}
    command = [sys.executable, "-m", "celery", "-A", "bench.bare_celery", "worker", "-c", "2", "-Q", "bare",
               "-n", "bare@%h", "-E", "--loglevel", "INFO"]  # fmt: skip
    log = open(directory / "bare-latency.log", "wb")
    worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)


def stamped_latency(counter: redis.Redis, jobs: int, send: Callable[[float], None]) -> list[float]:
    """`send(time.time())` submits a `bench.stamp` job; the task pushes its start latency."""
    counter.delete(LATENCY_KEY)
    send(time.time())  # warm-up (the worker's first task)
    counter.blpop([LATENCY_KEY], timeout=60)
    samples = []
    for _ in range(jobs):
        send(time.time())
        popped = counter.blpop([LATENCY_KEY], timeout=30)
        assert popped is not None, "the bare worker did not start a bench.stamp job within 30 s"
        samples.append(float(popped[1]))
        time.sleep(0.02)  # idle workers between jobs
    return samples


def apply_async(app: Celery) -> Callable[[float], None]:
    def send(sent_at: float) -> None:
        app.send_task("bench.stamp", args=[sent_at], queue="bare")

    return send


def hand_rolled(port: int) -> Callable[[float], None]:
    """POST /stamp to the bare Flask app: INSERT a row, commit, apply_async."""
    http = HTTPConnection("127.0.0.1", port, timeout=30)

    def send(sent_at: float) -> None:
        http.request(
            "POST", "/stamp", body=json.dumps({"sent_at": sent_at}), headers={"Content-Type": "application/json"}
        )
        response = http.getresponse()
        assert response.status == 202, response.read()
        response.read()

    return send


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--backends", default="embedded,services")
    args = parser.parse_args()
    rows = []
    for kind in args.backends.split(","):
        with ExitStack() as stack:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"latency-{kind}-")))
            database_url, broker_url, counter_url = backend_urls(kind, directory, stack)
            app, counter = make_bare_app(broker_url, counter_url)
            with bare_worker(directory, broker_url, counter_url):
                bare = percentiles(stamped_latency(counter, args.jobs, apply_async(app)))
                flask, port = start_bare_flask(directory, database_url, broker_url, counter_url)
                try:
                    rolled = percentiles(stamped_latency(counter, args.jobs, hand_rolled(port)))
                finally:
                    os.killpg(flask.pid, signal.SIGTERM)
                    flask.wait(30)
            cluster = Cluster(directory, database_url, broker_url, lease_seconds="30", reconcile_interval="2")
            stack.callback(cluster.close)
            cluster.start()
            cluster.wait_ready()
            cluster.wait_workers()
            samples, parts = conveyor_latency(cluster, args.jobs)
            conveyor = percentiles(samples) | parts
        rows.append({"backend": kind, "jobs": args.jobs, "bare_celery": bare, "hand_rolled_flask_celery": rolled,
                     "conveyor": conveyor, "ratio_p50": round(conveyor["p50_ms"] / bare["p50_ms"], 2),
                     "ratio_p50_vs_hand_rolled": round(conveyor["p50_ms"] / rolled["p50_ms"], 2)})  # fmt: skip
    print(
        "p50 / p99 ms; bare Celery: apply_async -> task; hand-rolled: POST to Flask that INSERTs, commits and "
        "apply_asyncs -> task; Conveyor: POST /v1/jobs -> claim (to handler + handler to claim = its p50 parts)"
    )
    print(f"{'backend':<10} {'bare Celery':>13} {'hand-rolled':>13} {'Conveyor':>13} {'vs bare':>8} "
          f"{'vs hand-rolled':>15} {'to handler':>11} {'to claim':>9}")  # fmt: skip
    for r in rows:
        b, h, c = r["bare_celery"], r["hand_rolled_flask_celery"], r["conveyor"]
        print(f"{r['backend']:<10} {b['p50_ms']:>6} /{b['p99_ms']:>6} {h['p50_ms']:>6} /{h['p99_ms']:>6} "
              f"{c['p50_ms']:>6} /{c['p99_ms']:>6} {r['ratio_p50']:>7}x {r['ratio_p50_vs_hand_rolled']:>14}x "
              f"{c['client_to_handler_p50_ms']:>11} {c['handler_to_start_p50_ms']:>9}")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": "latency", **machine(), "results": rows}
    (RESULTS / "latency.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
