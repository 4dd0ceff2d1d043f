"""Webhooks on each backend, end to end in one process: the API registers an endpoint, the real executor runs the
jobs, the dispatcher turns their events into deliveries, and the real executor POSTs them to a receiver on loopback
(named in CONVEYOR_WEBHOOK_ALLOW). Signatures are checked by the `standardwebhooks` package's own verifier."""

from __future__ import annotations

import json
import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, insert, select, text, update
from standardwebhooks import Webhook as Verifier
from standardwebhooks import WebhookVerificationError

from api import create_app
from core.db import make_sessionmaker
from core.models import Job, JobEvent, WebhookAttempt, WebhookCursor, WebhookDelivery
from core.queue import RecordingPublisher
from core.registry import load_registry
from core.settings import Settings
from core.types import utcnow
from core.webhook_dispatch import dispatch_events
from tests.support.keys import admin_client
from tests.support.receiver import Receiver, receiver
from tests.support.worker import RunJob, job_runner

ECHO = {"type": "echo", "payload": {"message": "hi"}}
CSV = "carrier,delay\nAA,5\nUA,7\n"


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as running:
        yield running


@pytest.fixture
def settings(clean_db: Engine, database_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=database_url, webhook_allow=["127.0.0.1"],
                    webhook_timeout_seconds=2)  # fmt: skip


@pytest.fixture
def app(settings: Settings) -> Iterator[APIFlask]:
    app = create_app(settings, publisher=RecordingPublisher())
    yield app
    app.extensions["conveyor"].engine.dispose()


@pytest.fixture
def acme(app: APIFlask) -> FlaskClient:
    return admin_client(app, "acme")


@pytest.fixture
def worker(settings: Settings) -> Iterator[RunJob]:
    """Runs one job through the real executor (the broker is the only thing skipped) and returns its row."""
    with job_runner(settings, load_registry()) as run:
        yield run


def dispatch(engine: Engine) -> list[Job]:
    """One dispatcher tick, as the maintenance worker runs it."""
    with make_sessionmaker(engine)() as session, session.begin():
        return dispatch_events(session, registry=load_registry(), known_queues=["default", "webhooks"]).jobs


def deliver(engine: Engine, worker: Callable[[str], Job]) -> list[Job]:
    """Dispatch, then run every delivery job made."""
    return [worker(str(job.id)) for job in dispatch(engine)]


def subscribe(client: FlaskClient, url: str, events: list[str], **fields: Any) -> dict[str, Any]:
    made = client.post("/v1/webhooks", json={"url": url, "event_types": events, **fields})
    assert made.status_code == 201, made.json
    return dict(made.json)


def verified(secret: str, received: Any) -> dict[str, Any]:
    """The body, as the receiver would verify it with the standardwebhooks package."""
    payload: dict[str, Any] = Verifier(secret).verify(received.body, received.headers)
    return payload


def test_a_finished_job_is_delivered_signed_once(acme: FlaskClient, clean_db: Engine, hook: Receiver,
                                                 worker: Callable[[str], Job]) -> None:  # fmt: skip
    webhook = subscribe(acme, hook.url, ["job.succeeded", "job.failed"])
    assert webhook["secret"].startswith("whsec_") and "secret" not in acme.get("/v1/webhooks").json["items"][0]
    job = acme.post("/v1/jobs", json=ECHO).json
    assert worker(job["id"]).status == "succeeded"
    [delivery_job] = deliver(clean_db, worker)
    assert delivery_job.status == "succeeded" and delivery_job.queue == "webhooks"
    [received] = hook.received
    event = verified(webhook["secret"], received)
    assert event["type"] == "job.succeeded" and event["data"]["job"]["id"] == job["id"]
    assert event["data"]["job"]["result"] == {"message": "hi"}
    assert received.headers["webhook-id"].startswith("msg_") and received.path == "/hooks"
    with pytest.raises(WebhookVerificationError):
        Verifier("whsec_" + "A" * 43).verify(received.body, received.headers)
    assert dispatch(clean_db) == []  # once: and the delivery job's own success makes no delivery
    [listed] = acme.get(f"/v1/webhooks/{webhook['id']}/deliveries").json["items"]
    assert (listed["id"], listed["status"], listed["event_type"]) == (received.headers["webhook-id"], "succeeded",
                                                                      "job.succeeded")  # fmt: skip
    assert [(a["attempt"], a["status_code"]) for a in listed["attempts"]] == [(1, 200)]
    assert listed["attempts"][0]["latency_ms"] >= 0 and listed["attempts"][0]["response"] == "ok"


def test_a_receiver_500_is_retried_with_the_same_id_and_every_attempt_recorded(
    acme: FlaskClient, clean_db: Engine, worker: Callable[[str], Job]
) -> None:
    with receiver(statuses=[500, 503, 200]) as hook:
        webhook = subscribe(acme, hook.url, ["job.failed"])
        failed = acme.post("/v1/jobs", json={"type": "fail", "payload": {"times": 5}, "max_attempts": 1}).json
        assert worker(failed["id"]).status == "failed"
        [delivery_job] = deliver(clean_db, worker)
        assert delivery_job.status == "retrying" and delivery_job.next_attempt_at is not None
        for _ in range(2):  # the reconciler makes it due; a worker runs it again
            with clean_db.begin() as conn:
                conn.execute(update(Job).where(Job.id == delivery_job.id).values(status="queued"))
            delivery_job = worker(str(delivery_job.id))
        assert delivery_job.status == "succeeded"
        ids = {r.headers["webhook-id"] for r in hook.received}
        assert len(hook.received) == 3 and len(ids) == 1
        assert verified(webhook["secret"], hook.received[-1])["data"]["job"]["error"]["type"] == "DeliberateFailure"
        [listed] = acme.get(f"/v1/webhooks/{webhook['id']}/deliveries").json["items"]
        assert [a["status_code"] for a in listed["attempts"]] == [500, 503, 200]
        assert listed["status"] == "succeeded"


def test_a_receiver_that_never_answers_fails_the_delivery_visibly(
    acme: FlaskClient, clean_db: Engine, worker: Callable[[str], Job]
) -> None:
    with receiver(statuses=[500]) as hook:
        webhook = subscribe(acme, hook.url, ["job.succeeded"])
        worker(acme.post("/v1/jobs", json=ECHO).json["id"])
        [delivery_job] = dispatch(clean_db)
        with clean_db.begin() as conn:  # its last attempt
            conn.execute(update(Job).where(Job.id == delivery_job.id).values(attempt=9))
        assert worker(str(delivery_job.id)).status == "failed"
        [listed] = acme.get(f"/v1/webhooks/{webhook['id']}/deliveries").json["items"]
        assert listed["status"] == "failed" and listed["attempts"][-1]["status_code"] == 500


def test_rotation_signs_with_both_secrets_during_the_overlap(
    acme: FlaskClient, clean_db: Engine, hook: Receiver, worker: Callable[[str], Job]
) -> None:
    webhook = subscribe(acme, hook.url, ["job.succeeded"])
    rotated = acme.post(f"/v1/webhooks/{webhook['id']}/rotate", json={"overlap_seconds": 3600}).json
    assert rotated["secret"] != webhook["secret"] and rotated["previous_secret_expires_at"] is not None
    assert acme.get(f"/v1/webhooks/{webhook['id']}/secret").json["secret"] == rotated["secret"]
    worker(acme.post("/v1/jobs", json=ECHO).json["id"])
    deliver(clean_db, worker)
    [received] = hook.received
    assert len(received.headers["webhook-signature"].split(" ")) == 2
    assert verified(webhook["secret"], received) == verified(rotated["secret"], received)  # either verifies
    again = acme.post(f"/v1/webhooks/{webhook['id']}/rotate", json={"overlap_seconds": 0}).json
    worker(acme.post("/v1/jobs", json=ECHO).json["id"])
    deliver(clean_db, worker)
    latest = hook.received[-1]
    assert len(latest.headers["webhook-signature"].split(" ")) == 1
    verified(again["secret"], latest)
    with pytest.raises(WebhookVerificationError):
        verified(rotated["secret"], latest)


def test_filters_by_event_and_job_type_and_dataset_ready(
    acme: FlaskClient, clean_db: Engine, hook: Receiver, worker: Callable[[str], Job]
) -> None:
    fails_only = subscribe(acme, hook.url, ["job.failed", "job.succeeded"], job_types=["fail"])
    datasets = subscribe(acme, hook.url, ["dataset.ready"])
    worker(acme.post("/v1/jobs", json=ECHO).json["id"])  # neither wants an echo
    uploaded = acme.post("/v1/datasets?name=flights", data=CSV, content_type="text/csv").json
    assert worker(uploaded["job"]["id"]).status == "succeeded"
    deliver(clean_db, worker)
    [received] = hook.received
    event = verified(datasets["secret"], received)
    assert event["type"] == "dataset.ready" and event["data"]["dataset_id"] == uploaded["dataset"]["id"]
    assert event["data"]["row_count"] == 2
    assert acme.get(f"/v1/webhooks/{fails_only['id']}/deliveries").json["items"] == []


def test_a_job_callback_url_is_called_signed_with_the_tenants_callbacks_secret(
    acme: FlaskClient, clean_db: Engine, hook: Receiver, worker: Callable[[str], Job]
) -> None:
    job = acme.post("/v1/jobs", json={**ECHO, "callback_url": hook.url + "/done"}).json
    assert job["callback_url"] == hook.url + "/done"
    [callbacks] = acme.get("/v1/webhooks").json["items"]
    assert callbacks["kind"] == "callbacks" and callbacks["url"] is None
    secret = acme.get(f"/v1/webhooks/{callbacks['id']}/secret").json["secret"]
    worker(job["id"])
    deliver(clean_db, worker)
    [received] = hook.received
    assert received.path == "/hooks/done" and verified(secret, received)["data"]["job"]["id"] == job["id"]
    acme.post("/v1/jobs", json={**ECHO, "callback_url": hook.url})  # the same callbacks row, not a second
    assert len(acme.get("/v1/webhooks").json["items"]) == 1


def test_redeliver_sends_the_same_delivery_again(
    acme: FlaskClient, clean_db: Engine, hook: Receiver, worker: Callable[[str], Job]
) -> None:
    webhook = subscribe(acme, hook.url, ["job.succeeded"])
    worker(acme.post("/v1/jobs", json=ECHO).json["id"])
    deliver(clean_db, worker)
    [delivery] = acme.get(f"/v1/webhooks/{webhook['id']}/deliveries").json["items"]
    again = acme.post(f"/v1/webhooks/{webhook['id']}/deliveries/{delivery['id']}/redeliver")
    assert again.status_code == 202 and again.json["id"] == delivery["id"] and again.json["status"] == "pending"
    assert again.json["job_id"] != delivery["job_id"]
    assert worker(again.json["job_id"]).status == "succeeded"
    assert [r.headers["webhook-id"] for r in hook.received] == [delivery["id"]] * 2
    assert hook.received[0].body == hook.received[1].body
    [listed] = acme.get(f"/v1/webhooks/{webhook['id']}/deliveries").json["items"]
    assert [a["status_code"] for a in listed["attempts"]] == [200, 200] and listed["status"] == "succeeded"


def test_events_from_before_a_webhook_and_of_other_tenants_are_not_its(
    app: APIFlask, acme: FlaskClient, clean_db: Engine, hook: Receiver, worker: Callable[[str], Job]
) -> None:
    worker(acme.post("/v1/jobs", json=ECHO).json["id"])  # before the webhook
    subscribe(acme, hook.url, ["job.succeeded"])
    globex = admin_client(app, "globex")
    worker(globex.post("/v1/jobs", json=ECHO).json["id"])
    assert dispatch(clean_db) == []


def test_a_late_committed_event_is_dispatched_when_it_appears(
    acme: FlaskClient, clean_db: Engine, hook: Receiver, worker: Callable[[str], Job]
) -> None:
    """An id the cursor passed unseen (a transaction committed after later ones, as on PostgreSQL) is a gap,
    looked for on the next ticks: here the gap is made by hand with explicit ids."""
    subscribe(acme, hook.url, ["job.succeeded"])
    first, late = (acme.post("/v1/jobs", json=ECHO).json["id"] for _ in range(2))
    worker(first)
    with clean_db.begin() as conn:
        late_id, later_id = two_event_ids(conn)
        conn.execute(insert(JobEvent).values(id=later_id, job_id=uuid.UUID(first), kind="note", created_at=utcnow()))
    assert len(dispatch(clean_db)) == 1  # the first job's; late_id is a gap now
    with clean_db.connect() as conn:
        assert [gap[0] for gap in conn.execute(select(WebhookCursor.gaps)).scalar_one()] == [late_id]
    with clean_db.begin() as conn:  # the late transaction commits: its job's success takes the gap's id
        conn.execute(update(Job).where(Job.id == uuid.UUID(late)).values(status="succeeded", finished_at=utcnow()))
        conn.execute(insert(JobEvent).values(id=late_id, job_id=uuid.UUID(late), kind="succeeded",
                                             created_at=utcnow()))  # fmt: skip
    [made] = dispatch(clean_db)
    with clean_db.connect() as conn:
        delivery = conn.execute(select(WebhookDelivery).where(WebhookDelivery.job_id == made.id)).one()
        assert json.loads(json.dumps(delivery.payload))["data"]["job"]["id"] == late
        assert conn.execute(select(WebhookCursor.gaps)).scalar_one() == []


def two_event_ids(conn: Any) -> tuple[int, int]:
    """The next two event ids, as two transactions would take them (PostgreSQL: from the sequence)."""
    if conn.dialect.name == "postgresql":
        take = text("SELECT nextval(pg_get_serial_sequence('job_events', 'id'))")
        return conn.execute(take).scalar_one(), conn.execute(take).scalar_one()
    newest = conn.execute(select(func.max(JobEvent.id))).scalar_one()
    return newest + 1, newest + 2


@pytest.mark.parametrize("url", ["http://10.0.0.1/hook", "http://[::1]/", "file:///etc/passwd", "ftp://x.example/",
                                 "http://169.254.169.254/latest/meta-data/"])  # fmt: skip
def test_registration_and_callbacks_refuse_what_the_guard_refuses(acme: FlaskClient, clean_db: Engine,
                                                                  url: str) -> None:  # fmt: skip
    refused = acme.post("/v1/webhooks", json={"url": url, "event_types": ["job.failed"]})
    assert refused.status_code == 422 and refused.json["type"] == "urn:conveyor:problem:url-refused"
    callback = acme.post("/v1/jobs", json={**ECHO, "callback_url": url})
    assert callback.status_code == 422 and callback.json["errors"][0]["field"] == "callback_url"
    with clean_db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Job)).scalar_one() == 0
    assert acme.get("/v1/webhooks").json["items"] == []


def test_a_name_that_rebinds_to_loopback_is_refused_at_delivery_with_no_connection(
    acme: FlaskClient, clean_db: Engine, worker: Callable[[str], Job], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = socket.getaddrinfo
    answers = {"first": True}

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.example":
            return real(host, *args, **kwargs)
        public = answers["first"]
        answers["first"] = False
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34" if public else "127.0.0.2", 80))]

    connections: list[Any] = []
    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: connections.append(a) or (_ for _ in ()).throw(
        ConnectionRefusedError()))  # fmt: skip
    webhook = subscribe(acme, "http://rebind.example/hook", ["job.succeeded"])  # public at registration
    worker(acme.post("/v1/jobs", json=ECHO).json["id"])
    [delivery_job] = deliver(clean_db, worker)
    assert delivery_job.status == "retrying" and connections == []
    [listed] = acme.get(f"/v1/webhooks/{webhook['id']}/deliveries").json["items"]
    [attempt] = listed["attempts"]
    assert attempt["status_code"] is None and "127.0.0.2" in attempt["error"]


def test_bad_requests_are_4xx_problems(acme: FlaskClient, hook: Receiver) -> None:
    assert acme.post("/v1/webhooks", json={"url": hook.url, "event_types": ["job.exploded"]}).status_code == 422
    assert acme.post("/v1/webhooks", json={"url": hook.url, "event_types": []}).status_code == 422
    unknown = acme.post("/v1/webhooks", json={"url": hook.url, "event_types": ["job.failed"], "job_types": ["nope"]})
    assert unknown.status_code == 422 and "nope" in unknown.json["detail"]
    assert acme.post("/v1/webhooks", json={"url": hook.url, "event_types": ["job.failed"], "secret": "x"})\
        .status_code == 422  # fmt: skip
    assert acme.get("/v1/webhooks/not-a-uuid").status_code == 404
    webhook = subscribe(acme, hook.url, ["job.failed"])
    assert acme.post(f"/v1/webhooks/{webhook['id']}/rotate", json={"overlap_seconds": -1}).status_code == 422
    assert acme.post(f"/v1/webhooks/{webhook['id']}/deliveries/msg_x/redeliver").status_code == 404
    assert acme.delete(f"/v1/webhooks/{webhook['id']}").status_code == 204
    assert acme.get(f"/v1/webhooks/{webhook['id']}").status_code == 404


def test_a_delivery_of_a_deleted_webhook_sends_nothing(
    acme: FlaskClient, clean_db: Engine, hook: Receiver, worker: Callable[[str], Job]
) -> None:
    webhook = subscribe(acme, hook.url, ["job.succeeded"])
    worker(acme.post("/v1/jobs", json=ECHO).json["id"])
    [delivery_job] = dispatch(clean_db)
    assert acme.delete(f"/v1/webhooks/{webhook['id']}").status_code == 204
    assert worker(str(delivery_job.id)).status == "succeeded" and hook.received == []
    with clean_db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(WebhookAttempt)).scalar_one() == 0


def test_webhook_secrets_never_reach_the_logs(
    acme: FlaskClient, clean_db: Engine, worker: Callable[[str], Job], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with receiver(statuses=[500, 200]) as hook:
        webhook = subscribe(acme, hook.url, ["job.succeeded"])
        rotated = acme.post(f"/v1/webhooks/{webhook['id']}/rotate", json={}).json
        worker(acme.post("/v1/jobs", json=ECHO).json["id"])
        [delivery_job] = deliver(clean_db, worker)  # a failed attempt (500), logged by the executor
        assert delivery_job.status == "retrying"
    assert any("DeliveryFailed" in r.getMessage() or r.exc_info for r in caplog.records)  # the attempt was logged
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in (webhook["secret"], rotated["secret"]):
        assert secret not in logged and secret.removeprefix("whsec_") not in logged


def test_deliveries_page_by_cursor_even_when_their_times_tie(
    acme: FlaskClient, clean_db: Engine, hook: Receiver, worker: Callable[[str], Job]
) -> None:
    webhook = subscribe(acme, hook.url, ["job.succeeded"])
    for _ in range(3):
        worker(acme.post("/v1/jobs", json=ECHO).json["id"])
    assert len(dispatch(clean_db)) == 3
    with clean_db.begin() as conn:  # made in the same instant: a time alone cannot tell the pages apart
        conn.execute(update(WebhookDelivery).values(created_at=utcnow()))
    path = f"/v1/webhooks/{webhook['id']}/deliveries"
    first = acme.get(f"{path}?limit=2").json
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = acme.get(f"{path}?limit=2&cursor={first['next_cursor']}").json
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    seen = [d["id"] for d in first["items"] + second["items"]]
    assert len(set(seen)) == 3
    bad = acme.get(f"{path}?cursor=not-a-cursor")
    assert bad.status_code == 400 and bad.json["type"] == "urn:conveyor:problem:bad-cursor"
