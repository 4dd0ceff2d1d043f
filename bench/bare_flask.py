"""The baselines of the API, latency and throughput benchmarks: a bare Flask app under the same gunicorn settings,
whose endpoints only `apply_async` (POST /apply), only INSERT a row and LPUSH its id (POST /insert), or do what a
hand-rolled Flask + Celery app does, INSERT a row, commit, `apply_async`: POST /stamp (which the bare worker's
`bench.stamp` task answers with its start latency), POST /jobs and POST /jobs:batch (whose `bench.mark_done` task
marks the row done: the thing Conveyor replaces, end to end). No validation, no ledger.

    BENCH_BROKER_URL=… BENCH_DATABASE_URL=… BENCH_REDIS_URL=… gunicorn 'bench.bare_flask:create_app()'
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import redis
from flask import Flask, request
from sqlalchemy import text

from bench.bare_celery import TABLE, make_bare_app
from cli.processes import heartbeat_in_memory
from core.db import make_engine
from tests.e2e.harness import free_port

ROOT = Path(__file__).resolve().parents[1]
THREADS = 8  # per gunicorn worker, with a database connection each: as Conveyor's API under `conveyor up`
GUNICORN = ["--worker-class", "gthread", "--threads", str(THREADS), *heartbeat_in_memory()]


def create_app() -> Flask:
    app = Flask("bare")
    celery, _ = make_bare_app(os.environ["BENCH_BROKER_URL"], os.environ["BENCH_REDIS_URL"])
    engine = make_engine(os.environ["BENCH_DATABASE_URL"], pool_size=THREADS)
    queue = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    insert_row = text(f"INSERT INTO {TABLE} (id, payload) VALUES (:id, :payload)")  # noqa: S608

    def store(payload: Any) -> str:
        """INSERT a row and commit; its id."""
        job_id = str(uuid.uuid4())
        with engine.begin() as connection:
            connection.execute(insert_row, {"id": job_id, "payload": json.dumps(payload)})
        return job_id

    @app.post("/apply")
    def apply() -> Any:
        celery.send_task("bench.noop", args=[0], queue="bare")
        return {"ok": True}, 202

    @app.post("/insert")
    def insert() -> Any:
        job_id = store(request.get_json())
        queue.lpush("bench:bare-queue", job_id)
        return {"id": job_id}, 202

    @app.post("/jobs")
    def submit() -> Any:
        job_id = store(request.get_json())
        celery.send_task("bench.mark_done", args=[job_id], queue="bare")
        return {"id": job_id}, 202

    @app.post("/jobs:batch")
    def submit_batch() -> Any:
        """One transaction for the rows, then a message each: as a hand-rolled batch endpoint would."""
        rows = [{"id": str(uuid.uuid4()), "payload": json.dumps(job)} for job in request.get_json()["jobs"]]
        with engine.begin() as connection:
            connection.execute(insert_row, rows)  # executemany
        for row in rows:
            celery.send_task("bench.mark_done", args=[row["id"]], queue="bare")
        return {"ids": [row["id"] for row in rows]}, 202

    @app.post("/stamp")
    def stamp() -> Any:
        body = request.get_json()
        job_id = store(body)
        celery.send_task("bench.stamp", args=[body["sent_at"]], queue="bare")
        return {"id": job_id}, 202

    return app


def start_bare_flask(
    directory: Path, database_url: str, broker_url: str, redis_url: str, *, workers: int = 2, log_level: str = "info"
) -> tuple[subprocess.Popen[bytes], int]:
    """The app under gunicorn in its own process group (stop it with os.killpg); returns it and its port once it
    answers."""
    # Made here, once: two gunicorn workers making it at once on SQLite could fail one's boot, and gunicorn then halts.
    engine = make_engine(database_url)
    with engine.begin() as connection:  # PostgreSQL or SQLite
        connection.execute(text(f"CREATE TABLE IF NOT EXISTS {TABLE} (id uuid PRIMARY KEY, payload jsonb, "
                                "status text NOT NULL DEFAULT 'queued', "
                                "created_at timestamptz DEFAULT CURRENT_TIMESTAMP)"))  # fmt: skip
    engine.dispose()
    port = free_port()
    env = {**os.environ, "BENCH_BROKER_URL": broker_url, "BENCH_DATABASE_URL": database_url,
           "BENCH_REDIS_URL": redis_url, "BENCH_COUNTER_URL": redis_url}  # fmt: skip
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        *GUNICORN,
        "--workers",
        str(workers),
        "--log-level",
        log_level,
        "bench.bare_flask:create_app()",
    ]
    log = open(directory / "bare-flask.log", "wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(100):
        if process.poll() is not None:
            break
        try:
            http = HTTPConnection("127.0.0.1", port, timeout=2)
            http.request("POST", "/apply")
            http.getresponse().read()
            http.close()
            return process, port
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the bare Flask app did not start:\n" + (directory / "bare-flask.log").read_text())
