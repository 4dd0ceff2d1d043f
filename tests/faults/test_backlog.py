"""A 5,000-job backlog drained by two worker processes: nothing lost, nothing twice, and a fair split."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from tests.faults.conftest import Scenario
from tests.faults.ledger import test_effects

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]


def test_5000_job_backlog_drains_fairly(scenario: Callable[..., Scenario]) -> None:
    s = scenario("backlog_5000", "services", start=("api", "maintenance", "beat"), republish_after="600")
    s.submit_many(5000, payload={})
    s.cluster.start("worker")
    s.fault_over()
    s.drain(600)
    with s.cluster.engine.connect() as conn:
        per_process = dict(conn.execute(select(test_effects.c.pid, func.count()).group_by(test_effects.c.pid)).all())
    ledger = s.ledger(effects_per_worker_process=per_process)
    ledger.assert_no_loss_no_duplicates()
    assert ledger.completed == 5000
    assert len(per_process) == 2 and min(per_process.values()) >= 0.4 * 5000, per_process
