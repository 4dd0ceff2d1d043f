"""Jobs through real api/worker/beat processes over HTTP, on each backend: embedded, services (PostgreSQL + Redis)
and rabbitmq (PostgreSQL + RabbitMQ: priorities through x-max-priority, the same messages over AMQP)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import func, select
from standardwebhooks import Webhook

from core.models import Job, JobResult
from core.queue import CeleryPublisher, make_celery
from core.registry import load_registry
from core.submit import JobRequest, submit_jobs
from tests.e2e.conftest import running_cluster
from tests.e2e.harness import Cluster
from tests.support.receiver import receiver

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["embedded", "services", "rabbitmq"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The core's scenarios on every broker Conveyor supports (the other modules' on embedded and services)."""
    with running_cluster(request.param, tmp_path_factory.mktemp(f"e2e-{request.param}")) as cluster:
        yield cluster


def test_200_echo_jobs_each_succeed_with_exactly_one_result(cluster: Cluster) -> None:
    ids = [cluster.submit("echo", {"message": f"m{i}"})["id"] for i in range(200)]
    for job_id in ids:
        cluster.wait_job(job_id, timeout=120)
    with cluster.session() as session:
        jobs = {str(j.id): j for j in session.scalars(select(Job).where(Job.id.in_(list(map(_uuid, ids)))))}
        results = session.execute(
            select(JobResult.job_id, func.count()).where(JobResult.job_id.in_(list(map(_uuid, ids))))
            .group_by(JobResult.job_id)
        ).all()  # fmt: skip
    assert {j.status for j in jobs.values()} == {"succeeded"}
    assert len(results) == 200 and {count for _, count in results} == {1}
    assert {j.attempt for j in jobs.values()} == {1}
    assert cluster.request("GET", f"/v1/jobs/{ids[7]}/result").json()["data"] == {"message": "m7"}


def test_concurrent_single_submits_each_get_their_own_job_run_once(cluster: Cluster) -> None:
    """8 clients POSTing at once over real sockets: requests share commits and messages (ADR 0006), yet each answer
    names the job made from its own body, and every job runs exactly once with its own result."""

    def submit_from(client: int) -> list[tuple[str, str]]:
        with cluster.new_http() as http:
            sent = []
            for i in range(25):
                message = f"c{client}-{i}"
                body = {"type": "echo", "payload": {"message": message}}
                response = http.post(f"{cluster.base}/v1/jobs", json=body, timeout=30)
                assert response.status_code == 202, response.text
                assert response.json()["payload"] == {"message": message}
                assert response.headers["Location"] == f"/v1/jobs/{response.json()['id']}"
                sent.append((response.json()["id"], message))
            return sent

    with ThreadPoolExecutor(8) as pool:
        sent = [pair for client in pool.map(submit_from, range(8)) for pair in client]
    assert len({job_id for job_id, _ in sent}) == 200
    for job_id, _ in sent:
        cluster.wait_job(job_id, timeout=120)
    with cluster.session() as session:
        ids = [_uuid(job_id) for job_id, _ in sent]
        jobs = {str(j.id): j for j in session.scalars(select(Job).where(Job.id.in_(ids)))}
        results = {str(r.job_id): r.data for r in session.scalars(select(JobResult).where(JobResult.job_id.in_(ids)))}
    assert {(j.status, j.attempt) for j in jobs.values()} == {("succeeded", 1)}
    assert results == {job_id: {"message": message} for job_id, message in sent}


def test_fail_twice_then_succeed_on_attempt_3(cluster: Cluster) -> None:
    job = cluster.wait_job(cluster.submit("fail", {"times": 2})["id"])
    assert job["status"] == "succeeded" and job["attempt"] == 3
    events = cluster.events(job["id"])
    assert [e["kind"] for e in events if e["kind"] in ("running", "retrying", "succeeded")] == [
        "running", "retrying", "running", "retrying", "running", "succeeded",
    ]  # fmt: skip
    assert [e["attempt"] for e in events if e["kind"] == "running"] == [1, 2, 3]
    assert cluster.request("GET", f"/v1/jobs/{job['id']}/result").json()["data"] == {"attempts": 3}


def test_exhausted_attempts_end_failed_with_the_error(cluster: Cluster) -> None:
    job = cluster.wait_job(cluster.submit("fail", {"times": 5}, max_attempts=3)["id"])
    assert job["status"] == "failed" and job["attempt"] == 3
    assert job["error"]["type"] == "DeliberateFailure" and "attempt 3" in job["error"]["message"]
    assert "Traceback" in job["error"]["traceback"]
    assert cluster.request("GET", f"/v1/jobs/{job['id']}/result").status_code == 409
    kinds = cluster.event_kinds(job["id"])
    assert kinds.count("running") == 3 and kinds[-1] == "failed"


def test_cancelled_queued_job_never_runs(cluster: Cluster) -> None:
    blockers = [cluster.submit("sleep", {"seconds": 2})["id"] for _ in range(2)]
    for job_id in blockers:
        cluster.wait_job(job_id, {"running"})
    queued = cluster.submit("echo", {"message": "never"})["id"]
    response = cluster.request("POST", f"/v1/jobs/{queued}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    for job_id in blockers:
        cluster.wait_job(job_id)
    time.sleep(1.5)  # its message is delivered after the blockers: give the worker time to (not) run it
    row = cluster.row(queued)
    assert row.status == "cancelled" and row.attempt == 0 and row.started_at is None
    assert "running" not in cluster.event_kinds(queued)


def test_cancel_running_sleep_stops_at_next_tick(cluster: Cluster) -> None:
    job_id = cluster.submit("sleep", {"seconds": 30})["id"]
    cluster.wait_job(job_id, {"running"})
    response = cluster.request("POST", f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200 and response.json()["cancel_requested"] is True
    job = cluster.wait_job(job_id, timeout=10)
    assert job["status"] == "cancelled"
    assert cluster.event_kinds(job_id)[-2:] == ["cancel_requested", "cancelled"]
    assert cluster.request("GET", f"/v1/jobs/{job_id}/result").status_code == 409


def test_delayed_job_does_not_start_before_run_at(cluster: Cluster) -> None:
    job = cluster.submit("echo", {"message": "later"}, delay_seconds=2)
    assert job["status"] == "scheduled"
    done = cluster.wait_job(job["id"], timeout=30)
    assert done["status"] == "succeeded"
    assert datetime.fromisoformat(done["started_at"]) >= datetime.fromisoformat(job["run_at"])


def test_sigkill_of_the_worker_child_completes_exactly_once(cluster: Cluster) -> None:
    job_id = cluster.submit("sleep", {"seconds": 2})["id"]
    cluster.wait_job(job_id, {"running"})
    child_pid = int(cluster.row(job_id).worker.rsplit(":", 1)[1])  # type: ignore[union-attr]
    os.kill(child_pid, signal.SIGKILL)
    job = cluster.wait_job(job_id, timeout=60)
    assert job["status"] == "succeeded" and job["attempt"] == 2
    kinds = cluster.event_kinds(job_id)
    assert kinds.count("succeeded") == 1 and "lease_expired" in kinds
    with cluster.session() as session:
        assert session.scalar(select(func.count()).select_from(JobResult).where(JobResult.job_id == _uuid(job_id))) == 1


def test_duplicate_broker_messages_run_once(cluster: Cluster) -> None:
    job_id = cluster.submit("sleep", {"seconds": 1})["id"]
    producer: Celery = make_celery(cluster.settings(), name="duplicate-sender")
    for _ in range(3):  # the API's own publish plus three more copies of the same wake-up call
        producer.send_task("jobs.sleep", args=[job_id], queue="default")
    job = cluster.wait_job(job_id)
    time.sleep(1.5)  # let the copies be delivered and dropped
    assert job["status"] == "succeeded" and cluster.row(job_id).attempt == 1
    assert cluster.event_kinds(job_id).count("running") == 1


def test_a_pickled_message_is_never_executed(cluster: Cluster) -> None:
    """Workers accept JSON only: a wake-up call serialized with pickle (what an attacker with broker access would
    send to run code on a worker) is dropped undecoded. The job it names stays queued until the reconciler's own
    JSON message runs it, once."""
    with cluster.session() as session:
        request = JobRequest(type="echo", payload={"message": "pickled"})
        [outcome] = submit_jobs(
            session, registry=load_registry(), known_queues=["default"], requests=[request]
        ).outcomes
        session.commit()
        assert outcome.job is not None
        job_id = str(outcome.job.id)  # committed and not published: only the pickled message names it
    sent_at = time.monotonic()
    attacker = make_celery(cluster.settings(), name="pickle-sender")
    attacker.conf.update(task_serializer="pickle", accept_content=["pickle", "json"])
    attacker.send_task("jobs.echo", args=[job_id], queue="default", serializer="pickle")
    broker = CeleryPublisher(make_celery(cluster.settings(), name="depth"))

    def waiting() -> int:  # the queue's messages at every priority level
        return broker.queue_depth("default")

    while waiting() and time.monotonic() - sent_at < 5:
        time.sleep(0.05)
    time.sleep(0.5)  # a worker that had decoded it would have claimed the row by now
    assert time.monotonic() - sent_at < cluster.settings().republish_after, "too slow to tell the two messages apart"
    row = cluster.row(job_id)
    assert waiting() == 0 and (row.status, row.attempt) == ("queued", 0)
    assert cluster.event_kinds(job_id) == ["queued"]
    done = cluster.wait_job(job_id, timeout=60)  # the reconciler republishes it as JSON
    assert done["status"] == "succeeded" and cluster.row(job_id).attempt == 1


def _uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)


def test_higher_priority_runs_first_when_workers_are_busy(cluster: Cluster) -> None:
    blockers = [cluster.submit("sleep", {"seconds": 1.5})["id"] for _ in range(2)]
    for job_id in blockers:
        cluster.wait_job(job_id, {"running"})
    low = [cluster.submit("echo", {"message": f"low {i}"}, priority=0)["id"] for i in range(4)]
    high = [cluster.submit("echo", {"message": f"high {i}"}, priority=9)["id"] for i in range(4)]
    for job_id in low + high:
        cluster.wait_job(job_id)
    started = {job_id: cluster.row(job_id).started_at for job_id in low + high}
    in_start_order = sorted(low + high, key=lambda j: started[j])
    # The broker hands the high ones out first. Two worker processes that free at the same moment take the last high
    # job and the first low one together, and either may write its started_at first: only that pair may swap.
    assert set(in_start_order[:3]) <= set(high), [("high" if j in high else "low") for j in in_start_order]
    assert set(in_start_order[5:]) <= set(low)


def test_event_stream_follows_a_job_to_the_end(cluster: Cluster) -> None:
    job_id = cluster.submit("sleep", {"seconds": 1.5})["id"]
    seen: list[dict[str, object]] = []
    with cluster.http.get(f"{cluster.base}/v1/jobs/{job_id}/stream", stream=True, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                seen.append(json.loads(line[len("data: ") :]))
    statuses = [job["status"] for job in seen]
    assert statuses[-1] == "succeeded" and "running" in statuses
    done = [job["progress"]["done"] for job in seen if job["status"] == "running" and job["progress"]]  # type: ignore[index]
    assert len(done) >= 2 and done == sorted(done)


def test_batch_submit_from_the_cli(cluster: Cluster, tmp_path: Path) -> None:
    batch = tmp_path / "jobs.jsonl"
    lines = [json.dumps({"type": "echo", "payload": {"message": f"b{i}"}}) for i in range(150)]
    lines.append(json.dumps({"type": "echo", "payload": {"wrong": 1}}))
    batch.write_text("\n".join(lines) + "\n")
    conveyor = str(Path(sys.executable).with_name("conveyor"))
    done = subprocess.run([conveyor, "submit", "--batch", str(batch), "--api", cluster.base], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "CONVEYOR_API_KEY": cluster.key})  # fmt: skip
    assert done.returncode == 1, done.stderr  # one item was refused
    ids = done.stdout.split()
    assert len(ids) == 150 and "accepted 150, existing 0, rejected 1" in done.stderr
    assert "job 151:" in done.stderr and "payload" in done.stderr
    for job_id in ids:
        assert cluster.wait_job(job_id)["status"] == "succeeded"


def test_batch_jobs_sharing_a_message_each_get_their_own_outcome(cluster: Cluster) -> None:
    """A batch's jobs of one type share one message (CONVEYOR_JOBS_PER_MESSAGE): one worker process runs them in
    turn, each with its own claim, events and result, and one that raises does not stop the others."""
    fails = [{"type": "fail", "payload": {"times": 1}}] * 3
    echoes = [{"type": "echo", "payload": {"message": f"e{i}"}} for i in range(5)]
    body = cluster.request("POST", "/v1/jobs:batch", json={"jobs": fails + echoes}).json()
    ids = [item["job"]["id"] for item in body["items"]]
    assert {cluster.wait_job(job_id)["status"] for job_id in ids} == {"succeeded"}
    for job_id in ids[:3]:  # each failed its first attempt inside the shared message, then ran again alone
        assert cluster.event_kinds(job_id) == ["queued", "running", "retrying", "queued", "running", "succeeded"]
        assert cluster.request("GET", f"/v1/jobs/{job_id}/result").json()["data"] == {"attempts": 2}
    echo_rows = [cluster.row(job_id) for job_id in ids[3:]]
    assert {row.message_jobs for row in echo_rows} == {5}
    assert len({row.worker for row in echo_rows}) == 1  # one message, one worker process
    assert [cluster.request("GET", f"/v1/jobs/{job_id}/result").json()["data"]["message"] for job_id in ids[3:]] == [
        f"e{i}" for i in range(5)
    ]


def test_an_oversized_body_gets_its_413_over_a_real_socket(cluster: Cluster) -> None:
    """gunicorn closes after the 413; unread body bytes would make that a reset ("broken pipe") on the client."""
    body = b'{"type": "echo", "payload": {"message": "' + b"x" * (2 << 20) + b'"}}'
    for _ in range(20):
        response = cluster.request("POST", "/v1/jobs", data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 413
        assert response.json()["type"] == "urn:conveyor:problem:request-too-large"


def test_a_webhook_hears_of_a_finished_job_through_the_real_processes(cluster: Cluster) -> None:
    """API → worker → the maintenance worker's dispatcher → a delivery job on the webhooks queue → a signed POST."""
    with receiver() as hook:
        made = cluster.request("POST", "/v1/webhooks", json={"url": hook.url, "event_types": ["job.succeeded"],
                                                              "job_types": ["echo"]})  # fmt: skip
        assert made.status_code == 201, made.text
        webhook = made.json()
        job = cluster.submit("echo", {"message": "hooked"})
        assert cluster.wait_job(job["id"])["status"] == "succeeded"
        hook.wait_for(1, timeout=60)
        events = [Webhook(webhook["secret"]).verify(r.body, r.headers) for r in hook.received]
        assert [e["data"]["job"]["id"] for e in events] == [job["id"]], cluster.logs("maintenance")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the delivery job records its success just after the POST
            [delivery] = cluster.request("GET", f"/v1/webhooks/{webhook['id']}/deliveries").json()["items"]
            if delivery["status"] == "succeeded":
                break
            time.sleep(0.2)
        assert delivery["status"] == "succeeded" and [a["status_code"] for a in delivery["attempts"]] == [200]
        assert cluster.row(delivery["job_id"]).queue == "webhooks"
    assert cluster.request("DELETE", f"/v1/webhooks/{webhook['id']}").status_code == 204
