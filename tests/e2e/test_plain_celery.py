"""A deployment with CONVEYOR_CELERY_LEAN=false: Celery's own send_task and kombu's own transports, the fallback for
a Celery or kombu outside the pinned versions. Jobs published alone and in shared messages each run exactly once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from core.models import Job, JobResult
from tests.e2e.conftest import running_cluster
from tests.e2e.harness import Cluster

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["embedded", "services"])
def plain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        request.param, tmp_path_factory.mktemp(f"plain-{request.param}"), celery_lean="false"
    ) as cluster:
        yield cluster


def test_lone_and_shared_messages_each_run_their_jobs_once(plain: Cluster) -> None:
    lone = [plain.submit("echo", {"message": f"l{i}"})["id"] for i in range(20)]
    batch = [{"type": "echo", "payload": {"message": f"b{i}"}} for i in range(20)]
    body = plain.request("POST", "/v1/jobs:batch", json={"jobs": batch}).json()
    shared = [item["job"]["id"] for item in body["items"]]
    ids = lone + shared
    assert {plain.wait_job(job_id)["status"] for job_id in ids} == {"succeeded"}
    keys = [uuid.UUID(job_id) for job_id in ids]
    with plain.session() as session:
        attempts = set(session.scalars(select(Job.attempt).where(Job.id.in_(keys))))
        results = session.execute(
            select(JobResult.job_id, func.count()).where(JobResult.job_id.in_(keys)).group_by(JobResult.job_id)
        ).all()
        sizes = set(session.scalars(select(Job.message_jobs).where(Job.id.in_(keys[20:]))))
    assert attempts == {1}
    assert len(results) == 40 and {count for _, count in results} == {1}
    assert sizes == {20}  # the batch's jobs shared one message, published by send_task
    assert plain.request("GET", f"/v1/jobs/{shared[3]}/result").json()["data"] == {"message": "b3"}
