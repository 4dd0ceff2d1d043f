"""The API under load, services backend (PostgreSQL + Redis), gunicorn with the same settings for every contender
(2 workers x 8 threads), 8 concurrent keep-alive connections, a warm-up and then three runs each (the median is
reported):

(c) POST /v1/jobs and GET /v1/jobs/{id}: requests/s, p50, p99 — vs a bare Flask endpoint that only `apply_async`s,
    and one that only INSERTs a row and LPUSHes its id;
(d) polling cost: 1,000 jobs polled round-robin with If-None-Match (their ETags): requests/s, p50/p99, the share
    answered 304, and the API's CPU time per 1,000 polls.

    .venv/bin/python bench/api_load.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bare_flask import GUNICORN, start_bare_flask
from bench.queue_throughput import RESULTS, backend_urls, machine
from tests.e2e.harness import Cluster

CONNECTIONS = 8
RUNS = 3
WARM_UP_SECONDS = 3
Request = Callable[[requests.Session, int], requests.Response]


def load(request: Request, seconds: float, expect: tuple[int, ...]) -> dict[str, float]:
    """CONNECTIONS threads, each on its own keep-alive session, sending `request` for `seconds`."""
    latencies: list[list[float]] = [[] for _ in range(CONNECTIONS)]
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(index: int) -> None:
        session, mine, n = requests.Session(), latencies[index], 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = request(session, index * 1_000_000 + n)
            mine.append(time.perf_counter() - started)
            n += 1
            if response.status_code not in expect:
                raise SystemExit(f"unexpected {response.status_code}: {response.text[:300]}")
            with lock:
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    samples = sorted(s * 1000 for mine in latencies for s in mine)
    return {"requests_per_s": round(len(samples) / elapsed, 1), "p50_ms": round(statistics.median(samples), 2),
            "p99_ms": round(samples[int(len(samples) * 0.99)], 2), "requests": len(samples),
            "share_304": round(statuses.get(304, 0) / len(samples), 3)}  # fmt: skip


WRK_SCRIPT = """
local requests, n = {}, 0
local calls = %s
for i, call in ipairs(calls) do
  requests[i] = wrk.format(call[1], call[2], call[3], call[4])
end
request = function()
  n = n + 1
  return requests[(n %% #requests) + 1]
end
local threads = {}
setup = function(thread) table.insert(threads, thread) end
statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do total[status] = (total[status] or 0) + count end
  end
  for status, count in pairs(total) do io.write(string.format("S%%d %%d\\n", status, count)) end
  io.write(string.format("P50 %%f\\nP99 %%f\\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


Call = tuple[str, str, dict[str, str], str | None]  # method, path, headers, body


def lua(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua(k)}] = {lua(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "{" + ", ".join(lua(v) for v in value) + "}"
    return json.dumps(value)


def load_wrk(base: str, calls: list[Call], seconds: float, directory: Path) -> dict[str, Any]:
    """wrk (C, epoll) as the client: unlike a Python client it leaves the CPU to the servers. `calls` are sent
    round-robin; status codes are counted by the script."""
    script = directory / "wrk.lua"
    script.write_text(WRK_SCRIPT % lua(calls))
    out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "-s", str(script), base],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    values = dict(line.split()[:2] for line in out.splitlines() if line.startswith(("P50", "P99", "S")))
    rate = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")))
    statuses = {int(k[1:]): int(v) for k, v in values.items() if k.startswith("S")}
    total = sum(statuses.values()) or 1
    return {"requests_per_s": round(rate, 1), "p50_ms": round(float(values["P50"]), 2),
            "p99_ms": round(float(values["P99"]), 2), "requests": total,
            "share_304": round(statuses.get(304, 0) / total, 3), "statuses": statuses}  # fmt: skip


def median_of_runs(base: str, calls: list[Call], seconds: float, directory: Path,
                   expect: tuple[int, ...] = (200, 202)) -> dict[str, Any]:  # fmt: skip
    """Three runs with wrk when installed (`apt-get install wrk`), else with the Python client; the medians."""
    if shutil.which("wrk"):
        # A discarded warm-up first: each gunicorn thread opens its pooled database connection and psycopg prepares
        # the statements on their fifth use; a first measured run paid that (p99 56-62 ms vs 22-25 ms after).
        load_wrk(base, calls, WARM_UP_SECONDS, directory)
        runs = [load_wrk(base, calls, seconds, directory) for _ in range(RUNS)]
        unexpected = {s for run in runs for s in run["statuses"] if s not in expect}
        if unexpected:
            raise SystemExit(f"unexpected statuses {unexpected} for {calls[0][:2]}")
    else:

        def request(session: requests.Session, n: int) -> requests.Response:
            method, path, headers, body = calls[n % len(calls)]
            return session.request(method, base + path, headers=headers, data=body, timeout=30)

        load(request, WARM_UP_SECONDS, expect)
        runs = [load(request, seconds, expect) for _ in range(RUNS)]
    keys = ("requests_per_s", "p50_ms", "p99_ms", "share_304")
    return {key: statistics.median(run[key] for run in runs) for key in keys} | {
        "client": "wrk" if shutil.which("wrk") else "python",
        "runs": runs,
    }


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children (the gunicorn master and its workers)."""
    pids = [pid, *map(int, subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True,
                                          check=True).stdout.split())]  # fmt: skip
    ticks = 0
    for one in pids:
        fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def with_cpu(pid: int, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A contender's results plus the CPU time its gunicorn processes spent per request over all runs (PostgreSQL's
    and Redis's share not included): what one request costs the machine, whatever the latency."""
    before = cpu_seconds(pid)
    result = run()
    used = cpu_seconds(pid) - before
    total = sum(r["requests"] for r in result["runs"])
    return result | {"server_cpu_ms_per_request": round(used / total * 1000, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-api-")))
        database_url, broker_url, _ = backend_urls("services", directory, stack)
        cluster = Cluster(directory, database_url, broker_url, api_workers="2")
        stack.callback(cluster.close)
        # As deployed, less the job worker: the jobs stay queued, so every poll sees the same job. The maintenance
        # worker gives the planner its statistics on `jobs` (core/planner_stats.py), as it does in production.
        cluster.start("api", "maintenance", "beat")
        cluster.wait_ready()
        bare, bare_port = start_bare_flask(directory, database_url, broker_url, broker_url)
        stack.callback(lambda: (os.killpg(bare.pid, signal.SIGTERM), bare.wait(10)))
        bare_base = f"http://127.0.0.1:{bare_port}"
        job = json.dumps({"type": "echo", "payload": {"message": "hi"}})
        post: list[Call] = [("POST", "/v1/jobs", {"Content-Type": "application/json", **cluster.auth}, job)]
        bare_post = lambda path: [("POST", path, {"Content-Type": "application/json"}, job)]  # noqa: E731
        api_pid = cluster.procs["api"].pid
        results["post_conveyor"] = with_cpu(
            api_pid, lambda: median_of_runs(cluster.base, post, args.seconds, directory)
        )
        results["post_bare_apply_async"] = with_cpu(
            bare.pid, lambda: median_of_runs(bare_base, bare_post("/apply"), args.seconds, directory)
        )
        results["post_bare_insert_lpush"] = with_cpu(
            bare.pid, lambda: median_of_runs(bare_base, bare_post("/insert"), args.seconds, directory)
        )

        items = [json.loads(job)] * 1000
        created = requests.post(f"{cluster.base}/v1/jobs:batch", json={"jobs": items}, headers=cluster.auth,
                                timeout=120).json()  # fmt: skip
        ids = [item["job"]["id"] for item in created["items"]]
        gets: list[Call] = [("GET", f"/v1/jobs/{i}", cluster.auth, None) for i in ids]
        results["get_conveyor"] = with_cpu(
            api_pid, lambda: median_of_runs(cluster.base, gets, args.seconds, directory, expect=(200,))
        )

        polls: list[Call] = [("GET", f"/v1/jobs/{i}", {**cluster.auth, "If-None-Match": requests.get(
            f"{cluster.base}/v1/jobs/{i}", headers=cluster.auth, timeout=30).headers["ETag"]}, None)
            for i in ids]  # fmt: skip
        polling = with_cpu(api_pid, lambda: median_of_runs(cluster.base, polls, args.seconds, directory, expect=(304,)))
        results["poll_1000_jobs_etag"] = polling | {
            "api_cpu_ms_per_1000_polls": round(polling["server_cpu_ms_per_request"] * 1000, 1)
        }

    base_apply = results["post_bare_apply_async"]
    base_insert = results["post_bare_insert_lpush"]
    client = results["post_conveyor"]["client"]
    print(f"services backend, gunicorn {shlex.join(GUNICORN)}, {CONNECTIONS} connections ({client}), median of "
          f"{RUNS} runs of {args.seconds:g} s")  # fmt: skip
    print(f"{'':<44}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>11}")
    labels = {"post_conveyor": "POST /v1/jobs (Conveyor)", "post_bare_apply_async": "Flask: apply_async only",
              "post_bare_insert_lpush": "Flask: INSERT + LPUSH only", "get_conveyor": "GET /v1/jobs/{id} (Conveyor)",
              "poll_1000_jobs_etag": "poll 1,000 jobs with If-None-Match"}  # fmt: skip
    for key, label in labels.items():
        r = results[key]
        print(
            f"{label:<44}{r['requests_per_s']:>9}{r['p50_ms']:>9}{r['p99_ms']:>9}{r['server_cpu_ms_per_request']:>11}"
        )
    post = results["post_conveyor"]
    throughput = post["requests_per_s"] / base_apply["requests_per_s"]
    print(
        f"POST p99 vs apply_async: {post['p99_ms'] / base_apply['p99_ms']:.2f}x; vs INSERT+LPUSH: "
        f"{post['p99_ms'] / base_insert['p99_ms']:.2f}x; req/s vs apply_async {throughput:.2f}x"
    )
    poll = results["poll_1000_jobs_etag"]
    print(
        f"polling: {poll['share_304']:.0%} answered 304, API CPU {poll['api_cpu_ms_per_1000_polls']} ms per 1,000 polls"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "api_load.json").write_text(json.dumps(machine() | {"results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
