"""GET /metrics of a running deployment (2 gunicorn workers, 2 pool children, one metrics directory): the job
counters equal the ledger's, also after a pool child is killed and replaced, and the maintenance tick's gauges
follow the backlog."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from core.models import Job, JobEvent
from tests.e2e.conftest import running_cluster
from tests.e2e.harness import Cluster
from tests.support.keys import issue_key

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["embedded", "services"])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        request.param, tmp_path_factory.mktemp(f"metrics-{request.param}"), api_workers="2", worker_concurrency="2"
    ) as cluster:
        yield cluster


def scrape(cluster: Cluster, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = requests.get(f"{cluster.base}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def ledger_counts(cluster: Cluster) -> dict[str, int]:
    with cluster.session() as session:
        kinds = dict(session.execute(select(JobEvent.kind, func.count()).group_by(JobEvent.kind)).all())
        jobs = session.scalar(select(func.count()).select_from(Job)) or 0
    return {"jobs": jobs, **kinds}


def wait_for(predicate: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def test_job_counters_equal_the_ledger_across_processes_and_a_replaced_child(deployment: Cluster) -> None:
    token = issue_key(deployment.engine, deployment.settings(), scopes=["metrics"])
    admin = requests.get(f"{deployment.base}/metrics", headers=deployment.auth, timeout=10)
    assert admin.status_code == 403  # the admin key of a tenant does not read every tenant's numbers
    assert requests.get(f"{deployment.base}/metrics", timeout=10).status_code == 401

    ids = [deployment.submit("echo", {"message": f"m{i}"})["id"] for i in range(30)]
    ids += [deployment.submit("fail", {"times": 1})["id"] for _ in range(4)]
    for job_id in ids:
        assert deployment.wait_job(job_id)["status"] == "succeeded"

    sleeper = deployment.submit("sleep", {"seconds": 2})["id"]  # its pool child is killed mid-job
    deployment.wait_job(sleeper, {"running"})
    # Counted just after the claim commits: a kill in between (the row is already `running`) would lose the count.
    wait_for(lambda: total(scrape(deployment, token), "conveyor_jobs_started_total", type="sleep") == 1)
    os.kill(int(deployment.row(sleeper).worker.rsplit(":", 1)[1]), signal.SIGKILL)  # type: ignore[union-attr]
    assert deployment.wait_job(sleeper, timeout=60)["status"] == "succeeded"
    ids += [sleeper] + [deployment.submit("echo", {"message": "after"})["id"] for _ in range(10)]
    for job_id in ids[-10:]:
        deployment.wait_job(job_id)

    ledger = ledger_counts(deployment)
    samples = scrape(deployment, token)
    assert total(samples, "conveyor_jobs_submitted_total") == ledger["jobs"] == len(ids) + 1  # + the warm-up job
    assert total(samples, "conveyor_jobs_started_total") == ledger["running"]
    assert total(samples, "conveyor_jobs_succeeded_total") == ledger["succeeded"] == len(ids) + 1
    assert total(samples, "conveyor_jobs_retried_total") == ledger["retrying"] == 5  # 4 fails + the killed sleep
    assert total(samples, "conveyor_jobs_lease_expired_total", type="sleep") == ledger["lease_expired"] == 1
    assert total(samples, "conveyor_jobs_failed_total") == 0
    assert total(samples, "conveyor_jobs_submitted_total", type="fail", queue="default") == 4
    assert total(samples, "conveyor_job_run_seconds_count", type="echo") == 41  # each echo ran once
    assert total(samples, "conveyor_job_queue_wait_seconds_count") == ledger["running"]
    assert total(samples, "conveyor_api_requests_total", route="/v1/jobs", method="POST", status="202") == len(ids) + 1


def test_the_maintenance_tick_sets_backlog_gauges_and_heartbeats(deployment: Cluster) -> None:
    token = issue_key(deployment.engine, deployment.settings(), scopes=["metrics"])
    later = deployment.submit("echo", {"message": "later"}, delay_seconds=3600)["id"]

    def scheduled_gauge_is_one() -> bool:
        return total(scrape(deployment, token), "conveyor_queue_jobs", queue="default", status="scheduled") == 1

    wait_for(scheduled_gauge_is_one)
    assert deployment.request("POST", f"/v1/jobs/{later}/cancel").status_code == 200

    def drained() -> bool:
        return total(scrape(deployment, token), "conveyor_queue_jobs", queue="default") == 0

    wait_for(drained)
    samples = scrape(deployment, token)
    now = time.time()
    assert now - total(samples, "conveyor_maintenance_tick_timestamp_seconds", task="reconcile") < 30
    assert now - total(samples, "conveyor_maintenance_tick_timestamp_seconds", task="schedules") < 30
    heartbeats = [v for (n, _), v in samples.items() if n == "conveyor_worker_heartbeat_timestamp_seconds"]
    assert len(heartbeats) >= 2 and all(now - beat < 30 for beat in heartbeats)  # jobs@ and maintenance@
