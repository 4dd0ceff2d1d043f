"""CLI shim for `celery -A worker.app worker|beat|flower`: the one place a Celery app is built at import."""

from __future__ import annotations

from worker.factory import create_worker_app

app = create_worker_app()
