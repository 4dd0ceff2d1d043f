"""Maintenance tasks ticked by beat: the reconciler."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from core.jobs import mark_unpublished
from core.reconcile import reconcile
from worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)


def run_reconcile(runtime: WorkerRuntime) -> dict[str, Any]:
    settings = runtime.settings
    with runtime.sessions() as session, session.begin():
        report = reconcile(
            session,
            republish_after=settings.republish_after,
            backoff_cap=settings.retry_backoff_max,
        )
    failed = runtime.publisher.publish(report.to_publish)
    if failed:
        with runtime.sessions() as session, session.begin():
            mark_unpublished(session, failed)
    summary = asdict(report) | {"to_publish": len(report.to_publish), "publish_failed": len(failed)}
    if report.to_publish or report.leases_expired:
        log.info("reconcile: %s", summary)
    return summary
