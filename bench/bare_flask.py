"""The baselines of the API benchmark: a bare Flask app under the same gunicorn settings, whose endpoints only
`apply_async` (POST /apply) or only INSERT a row and LPUSH its id (POST /insert). No validation, no ledger.

    BENCH_BROKER_URL=… BENCH_DATABASE_URL=… BENCH_REDIS_URL=… gunicorn 'bench.bare_flask:create_app()'
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import redis
from flask import Flask, request
from sqlalchemy import text

from bench.bare_celery import make_bare_app
from core.db import make_engine

TABLE = "bare_jobs"


def create_app() -> Flask:
    app = Flask("bare")
    celery, _ = make_bare_app(os.environ["BENCH_BROKER_URL"], os.environ["BENCH_REDIS_URL"])
    engine = make_engine(os.environ["BENCH_DATABASE_URL"], pool_size=8)  # a connection per thread, as Conveyor's API
    queue = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    with engine.begin() as connection:
        connection.execute(text(f"CREATE TABLE IF NOT EXISTS {TABLE} (id uuid PRIMARY KEY, payload jsonb, "
                                "created_at timestamptz DEFAULT now())"))  # fmt: skip

    @app.post("/apply")
    def apply() -> Any:
        celery.send_task("bench.noop", args=[0], queue="bare")
        return {"ok": True}, 202

    @app.post("/insert")
    def insert() -> Any:
        job_id = uuid.uuid4()
        with engine.begin() as connection:
            connection.execute(text(f"INSERT INTO {TABLE} (id, payload) VALUES (:id, :payload)"),  # noqa: S608
                               {"id": job_id, "payload": json.dumps(request.get_json())})  # fmt: skip
        queue.lpush("bench:bare-queue", str(job_id))
        return {"id": str(job_id)}, 202

    return app
