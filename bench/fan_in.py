"""A 1,000-way fan-out and fan-in of no-op jobs: a Conveyor workflow (a mapped step, then a step that receives the
list of results) vs a Celery chord on the same Redis (result backend Redis, as a chord needs), same workers and
machine, in the same run. Measured: the time from submit to the callback's start, and CPU per child by role.

    .venv/bin/python bench/fan_in.py [--children 1000] [--rounds 3] [--backends services,embedded]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from celery import chord

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bare_chord import STARTED_KEY, make_chord_app
from bench.cpu import CpuMeter, group, named
from bench.queue_throughput import RESULTS, backend_urls, conveyor_roles, machine
from core.models import Job
from tests.e2e.harness import ROOT, Cluster


def chord_round(app: Any, stamps: Any, children: int) -> float:
    stamps.delete(STARTED_KEY)
    sent = time.time()
    chord(app.signature("bench.item", args=[i], queue="bare") for i in range(children))(
        app.signature("bench.gather", queue="bare"))  # fmt: skip
    while not (started := stamps.lrange(STARTED_KEY, 0, -1)):
        time.sleep(0.01)
    at, count = started[0].decode().split()
    assert int(count) == children, "the callback must receive every child's result"
    return float(at) - sent


def chord_run(directory: Path, broker_url: str, backend_url: str, children: int, rounds: int,
              concurrency: int) -> dict[str, Any]:  # fmt: skip
    env = {**os.environ, "BENCH_BROKER_URL": broker_url, "BENCH_BACKEND_URL": backend_url}
    command = [sys.executable, "-m", "celery", "-A", "bench.bare_chord", "worker", "-c", str(concurrency),
               "-Q", "bare", "-n", "chord@%h", "-E", "--loglevel", "WARNING"]  # fmt: skip
    log = open(directory / "chord.log", "wb")
    worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    app, stamps = make_chord_app(broker_url, backend_url)
    try:
        chord_round(app, stamps, 10)  # warm-up: the worker is consuming
        meter = CpuMeter({"worker": group(worker.pid), "redis": named("redis-server")})
        meter.start()
        times = [chord_round(app, stamps, children) for _ in range(rounds)]
        return {"seconds": times, "cpu_ms_per_child": meter.per_job(children * rounds)}
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(30)


def conveyor_round(cluster: Cluster, children: int) -> float:
    steps = [
        {"name": "fan", "type": "collect", "map": list(range(children)), "payload": {"value": {"$ref": "item"}}},
        {"name": "join", "type": "collect", "depends_on": ["fan"], "payload": {"items": {"$ref": "steps.fan.result"}}},
    ]
    sent = time.time()
    response = cluster.request("POST", "/v1/workflows", json={"name": "fan-in", "steps": steps})
    assert response.status_code == 202, response.text
    workflow_id = uuid.UUID(response.json()["id"])
    while True:
        with cluster.session() as session:
            join = session.query(Job).filter(Job.workflow_id == workflow_id, Job.workflow_step == "join").one_or_none()
            if join is not None and join.started_at is not None:
                started = join.started_at.timestamp()
                break
        time.sleep(0.02)
    flow = cluster.request("GET", f"/v1/workflows/{workflow_id}").json()
    while flow["finished_at"] is None:
        time.sleep(0.05)
        flow = cluster.request("GET", f"/v1/workflows/{workflow_id}").json()
    assert flow["status"] == "succeeded", flow
    return started - sent


def run_backend(kind: str, children: int, rounds: int, concurrency: int) -> dict[str, Any]:
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-fan-in-{kind}-")))
        database_url, broker_url, counter_url = backend_urls(kind, directory, stack)
        backend_url = counter_url if kind != "embedded" else counter_url.replace("unix://", "redis+socket://")
        baseline = chord_run(directory, broker_url, backend_url, children, rounds, concurrency)
        cluster = Cluster(directory, database_url, broker_url, worker_concurrency=str(concurrency),
                          lease_seconds="30", reconcile_interval="2", republish_after="60")  # fmt: skip
        stack.callback(cluster.close)
        cluster.start()
        cluster.wait_ready()
        cluster.wait_workers()
        conveyor_round(cluster, 10)  # warm-up
        meter = CpuMeter(conveyor_roles(cluster, database_url))
        meter.start()
        times = [conveyor_round(cluster, children) for _ in range(rounds)]
        ours = {"seconds": times, "cpu_ms_per_child": meter.per_job(children * rounds)}
    chord_s, conveyor_s = statistics.median(baseline["seconds"]), statistics.median(times)
    return {"backend": kind, "children": children, "rounds": rounds, "worker_processes": concurrency,
            "chord": baseline, "conveyor": ours, "chord_median_s": round(chord_s, 3),
            "conveyor_median_s": round(conveyor_s, 3),
            "speed_ratio": round(chord_s / conveyor_s, 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--children", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--backends", default="services,embedded")
    args = parser.parse_args()
    rows = [run_backend(kind, args.children, args.rounds, args.concurrency) for kind in args.backends.split(",")]
    print(f"{'backend':<10} {'children':>8} {'chord s':>8} {'conveyor s':>11} {'vs chord':>9}")
    for r in rows:
        print(f"{r['backend']:<10} {r['children']:>8} {r['chord_median_s']:>8} {r['conveyor_median_s']:>11} "
              f"{r['speed_ratio']:>9}")  # fmt: skip
    for r in rows:
        for who in ("chord", "conveyor"):
            cpu = r[who]["cpu_ms_per_child"]
            print(f"  {r['backend']} {who} CPU ms/child: {cpu} (total {round(sum(cpu.values()), 3)})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fan_in.json").write_text(json.dumps({"benchmark": "fan_in", **machine(), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
