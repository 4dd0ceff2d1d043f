"""Broker unreachable at submit: the API still answers 202 (the row is committed), and the job completes once
the broker is back, through the reconciler."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.e2e.harness import Cluster
from tests.support.backends import RedisServer, postgres_database, rabbitmq_vhost, rabbitmqctl

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["embedded", "services"])
def outage_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, RedisServer]]:
    directory = tmp_path_factory.mktemp(f"outage-{request.param}")
    with ExitStack() as stack:
        broker = RedisServer(directory / "broker")  # a broker this test may stop: never the machine's
        broker.start()
        stack.callback(broker.stop)
        if request.param == "embedded":
            database_url = f"sqlite:///{directory / 'conveyor.db'}"
        else:
            database_url = stack.enter_context(postgres_database())
        cluster = Cluster(directory, database_url, broker.url)
        stack.callback(cluster.close)
        cluster.start()
        cluster.wait_ready()
        cluster.wait_workers()
        yield cluster, broker


def test_submit_during_broker_outage_is_accepted_and_completes_later(
    outage_cluster: tuple[Cluster, RedisServer],
) -> None:
    cluster, broker = outage_cluster
    broker.stop()
    started = time.monotonic()
    accepted = [cluster.submit("echo", {"message": f"during outage {i}"})["id"] for i in range(3)]
    assert time.monotonic() - started < 30, "a broker outage must not hang the API"
    assert cluster.request("GET", "/readyz").status_code == 503
    for job_id in accepted:
        row = cluster.row(job_id)
        assert row.status == "queued" and row.published_at is None  # durable, and marked for the reconciler
    time.sleep(2)
    assert {cluster.row(job_id).status for job_id in accepted} == {"queued"}

    broker.start()
    for job_id in accepted:
        assert cluster.wait_job(job_id, timeout=90)["status"] == "succeeded"
    for job_id in accepted:
        kinds = cluster.event_kinds(job_id)
        assert "republished" in kinds and kinds.count("succeeded") == 1 and kinds.count("running") == 1


def test_a_rabbitmq_restart_loses_no_job(tmp_path_factory: pytest.TempPathFactory) -> None:
    """RabbitMQ stopped and started again (rabbitmqctl stop_app / start_app: the machine's broker, which restarts
    in seconds): jobs submitted meanwhile are accepted and committed, messages published before it were persistent
    in durable queues, and every job succeeds once after it."""
    directory = tmp_path_factory.mktemp("outage-rabbitmq")
    with ExitStack() as stack:
        broker_url = stack.enter_context(rabbitmq_vhost())
        cluster = Cluster(directory, stack.enter_context(postgres_database()), broker_url)
        stack.callback(cluster.close)
        cluster.start()
        cluster.wait_ready()
        cluster.wait_workers()
        waiting = [cluster.submit("sleep", {"seconds": 0.2})["id"] for _ in range(6)]  # some still in the queue
        rabbitmqctl("stop_app")
        try:
            accepted = [cluster.submit("echo", {"message": f"during outage {i}"})["id"] for i in range(3)]
            for job_id in accepted:
                assert cluster.row(job_id).published_at is None  # committed, marked for the reconciler
        finally:
            rabbitmqctl("start_app")
            rabbitmqctl("await_startup")
        for job_id in waiting + accepted:
            assert cluster.wait_job(job_id, timeout=120)["status"] == "succeeded", cluster.logs("worker")
        # succeeded once each (a job running when the connection dropped is cancelled by its worker, and runs again)
        for job_id in waiting + accepted:
            assert cluster.event_kinds(job_id).count("succeeded") == 1
