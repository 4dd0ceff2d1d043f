"""A worker process's runtime on each backend, whose publishes are recorded (the broker is the one thing skipped)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.queue import RecordingPublisher, make_celery
from core.registry import load_registry
from core.settings import Settings
from worker.runtime import WorkerRuntime


@pytest.fixture
def runtime(clean_db: Engine, database_url: str, tmp_path: Path) -> Iterator[WorkerRuntime]:
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    runtime = WorkerRuntime(settings, load_registry(), make_celery(settings, name="test"))
    runtime.publisher = RecordingPublisher()  # type: ignore[assignment]
    yield runtime
    runtime.close()
