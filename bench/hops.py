"""The hot path's hops: which of Conveyor's functions, in which files, one POST /v1/jobs and one worker delivery pass
through (issue 25's measure of how far a newcomer must read). Traced with sys.setprofile on the second of each
(the first warms caches), on PostgreSQL and a real Redis broker, in this process.

    python bench/hops.py [--database-url URL] [--broker-url URL] [--show]

Counts every call of a function defined in api/, core/, worker/ or tasks/ of this checkout; `--show` lists them in
call order. With auth on, the key's check adds its own hops (printed separately).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from core.db import make_engine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LAYERS = tuple(str(ROOT / layer) + "/" for layer in ("api", "core", "worker", "tasks"))


class Hops:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __enter__(self) -> Hops:
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *_: Any) -> None:
        sys.setprofile(None)

    def _profile(self, frame: Any, event: str, _arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(LAYERS):
            name = frame.f_code.co_qualname if hasattr(frame.f_code, "co_qualname") else frame.f_code.co_name
            if not name.rsplit(".", 1)[-1].startswith("<"):  # comprehensions and lambdas: part of their function
                self.calls.append((str(Path(frame.f_code.co_filename).relative_to(ROOT)), name))

    def report(self, title: str, show: bool) -> None:
        functions = list(dict.fromkeys(self.calls))
        files = list(dict.fromkeys(path for path, _ in functions))
        print(f"{title}: {len(functions)} functions in {len(files)} files ({len(self.calls)} calls)")
        if show:
            for path, name in functions:
                print(f"    {path}: {name}")


def fresh_database(admin_url: str) -> str:
    name = f"conveyor_hops_{uuid.uuid4().hex[:8]}"
    engine = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin_url: str, url: str) -> None:
    engine = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--show", action="store_true")
    args = parser.parse_args()

    from api.app import create_app
    from core.migrate import upgrade_database
    from core.models import Job
    from core.queue import make_celery
    from core.registry import Registry
    from core.settings import Settings
    from tasks.echo import spec as echo
    from worker.executor import Delivery, execute_message
    from worker.runtime import WorkerRuntime

    registry = Registry([echo])  # the one type traced (the same code path as an installed one)

    database_url = fresh_database(args.database_url)
    try:
        upgrade_database(database_url)
        fields = Settings.model_fields
        extra = {"auth": "off"} if "auth" in fields else {}
        settings = Settings(database_url=database_url, broker_url=args.broker_url, data_dir=ROOT / "var" / "hops",
                            **extra)  # fmt: skip
        if "rate_limit" in fields:
            settings = settings.model_copy(update={"rate_limit": ""})
        client = create_app(settings, registry=registry).test_client()
        body = {"type": "echo", "payload": {"message": "hop"}}
        ids = [client.post("/v1/jobs", json=body).get_json()["id"]]
        with Hops() as post:
            response = client.post("/v1/jobs", json=body)
        assert response.status_code == 202, response.get_data(as_text=True)
        ids.append(response.get_json()["id"])
        post.report("POST /v1/jobs (auth off, no rate limit)", args.show)

        runtime = WorkerRuntime(settings, registry, make_celery(settings, name="hops"))
        execute_message(runtime, registry.get("echo"), [ids[0]], Delivery("hops"))
        with Hops() as delivery:
            execute_message(runtime, registry.get("echo"), [ids[1]], Delivery("hops"))
        delivery.report("a delivery of one job (claim, run, complete)", args.show)
        with runtime.sessions() as session:
            assert {session.get_one(Job, uuid.UUID(i)).status for i in ids} == {"succeeded"}
        runtime.close()
    finally:
        drop_database(args.database_url, database_url)


if __name__ == "__main__":
    main()
