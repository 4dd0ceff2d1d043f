"""The API's database connections: one per gunicorn thread, kept, never opened per request."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from api import create_app
from core.queue import RecordingPublisher
from core.settings import Settings
from tests.support.keys import app_key, client_with


def test_concurrent_requests_reuse_a_connection_per_thread(clean_db: Engine, database_url: str, tmp_path: Path) -> None:
    """Beyond its pool's size a pool opens overflow connections and closes them again as they come back: each was a
    new PostgreSQL backend (hundreds in seconds of GETs). With a connection per thread none is opened twice."""
    threads = 8
    settings = Settings(data_dir=tmp_path, database_url=database_url, api_threads=threads)
    app = create_app(settings, publisher=RecordingPublisher())
    engine = app.extensions["conveyor"].engine
    token = app_key(app)
    opened: list[Any] = []
    event.listen(engine, "connect", lambda connection, _record: opened.append(connection))
    try:
        job_id = (
            client_with(app, token).post("/v1/jobs", json={"type": "echo", "payload": {"message": "hi"}}).json["id"]
        )
        # Every request holds its connection until all the others have one too, and the next round starts when all
        # have given theirs back: `threads` requests at once, five times.
        all_hold_one, all_gave_back = threading.Barrier(threads), threading.Barrier(threads)
        event.listen(engine, "checkout", lambda *_: all_hold_one.wait(timeout=10))
        statuses: list[int] = []

        def read() -> None:
            client = client_with(app, token)
            for _ in range(5):
                statuses.append(client.get(f"/v1/jobs/{job_id}").status_code)
                all_gave_back.wait(timeout=10)

        readers = [threading.Thread(target=read) for _ in range(threads)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()
        assert statuses == [200] * threads * 5
        assert len(opened) <= threads
    finally:
        engine.dispose()
