"""Tenant isolation, as a matrix: two tenants, every /v1 route that takes an id or lists objects, both directions.

Another tenant's object answers 404 exactly like a missing one, lists never include it, nothing of it changes, and a
payload naming it is refused like a payload naming nothing. A new /v1 route fails `test_the_matrix_covers_every_route`
until it is added here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from core.db import make_sessionmaker
from core.models import ApiKey, Dataset, Job, Schedule
from core.registry import load_registry
from core.submit import JobRequest, build_job
from core.types import utcnow
from core.webhook_dispatch import dispatch_events
from tests.api.conftest import KeyFactory
from tests.support.keys import client_with
from tests.support.worker import job_runner

CSV = "carrier,delay\nAA,5\nUA,7\nAA,1\n"
MISSING = "00000000-0000-4000-8000-000000000000"


@dataclass
class Tenant:
    name: str
    client: FlaskClient
    job: str  # succeeded, with events and a result
    failed_job: str
    schedule: str
    dataset: str  # ready, with rows
    file: str  # the dataset's upload
    key: str  # a key id of this tenant's
    webhook: str = MISSING  # subscribed to job.failed, with one delivery (of the failed job's event)
    delivery: str = "msg_" + "0" * 32
    workflow: str = MISSING  # failed (a step could not be released), so that a retry of it would do something
    failure: str = "f" * 16  # the fingerprint of failed_job's group


def run(app: APIFlask, job_id: str) -> None:
    """The worker's part, through the real executor (the broker is the only thing skipped)."""
    with job_runner(app.extensions["conveyor"].settings, load_registry()) as run_job:
        run_job(job_id)


def make_tenant(app: APIFlask, make_key: KeyFactory, name: str) -> Tenant:
    client = client_with(app, make_key(name))
    # a public address, written as one (no resolver involved); its delivery is made, never run
    webhook = client.post("/v1/webhooks", json={"url": "https://93.184.216.34/hook", "event_types": ["job.failed"]})
    assert webhook.status_code == 201, webhook.json
    job = client.post("/v1/jobs", json={"type": "echo", "payload": {"message": name}}).json["id"]
    run(app, job)
    # its own cause (a failure group of its own: the same error in both tenants would share a fingerprint)
    payload = {"times": 5, "message": f"{name} broke"}
    failed = client.post("/v1/jobs", json={"type": "fail", "payload": payload, "max_attempts": 1}).json["id"]
    run(app, failed)
    schedule = client.post("/v1/schedules", json={"name": "nightly", "type": "echo", "cron": "0 2 * * *",
                                                  "payload": {"message": name}}).json["id"]  # fmt: skip
    uploaded = client.post("/v1/datasets?name=flights", data=CSV, content_type="text/csv")
    assert uploaded.status_code == 202, uploaded.json
    run(app, uploaded.json["job"]["id"])
    key = client.post("/v1/keys", json={"scopes": ["jobs:read"], "name": "extra"}).json["id"]
    # failed without a failed job (whose event would make a second delivery): its second step names a field absent
    flow = client.post("/v1/workflows", json={"name": "flow", "steps": [
        {"name": "only", "type": "echo", "payload": {"message": name}},
        {"name": "next", "type": "echo", "payload": {"message": {"$ref": "steps.only.result.nope"}},
         "depends_on": ["only"]}]})  # fmt: skip
    assert flow.status_code == 202, flow.json
    run(app, flow.json["steps"][0]["job_id"])
    ext = app.extensions["conveyor"]
    with ext.sessions() as session, session.begin():
        dispatch_events(session, registry=ext.registry, known_queues=ext.settings.queues)
    [delivery] = client.get(f"/v1/webhooks/{webhook.json['id']}/deliveries").json["items"]
    return Tenant(name, client, job, failed, schedule, uploaded.json["dataset"]["id"],
                  uploaded.json["job"]["payload"]["file_id"], key, webhook.json["id"], delivery["id"],
                  flow.json["id"], client.get(f"/v1/jobs/{failed}").json["error_fingerprint"])  # fmt: skip


@pytest.fixture
def tenants(app: APIFlask, make_key: KeyFactory) -> Iterator[tuple[Tenant, Tenant]]:
    yield make_tenant(app, make_key, "acme"), make_tenant(app, make_key, "globex")


# (method, rule) → the request made against the other tenant's objects: path and keyword arguments.
def by_id(owner: Tenant) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    csv = {"data": CSV, "content_type": "text/csv"}
    return {
        ("GET", "/v1/jobs/<job_id>"): (f"/v1/jobs/{owner.job}", {}),
        ("GET", "/v1/jobs/<job_id>/events"): (f"/v1/jobs/{owner.job}/events", {}),
        ("GET", "/v1/jobs/<job_id>/result"): (f"/v1/jobs/{owner.job}/result", {}),
        ("GET", "/v1/jobs/<job_id>/stream"): (f"/v1/jobs/{owner.job}/stream", {}),
        ("POST", "/v1/jobs/<job_id>/read-token"): (f"/v1/jobs/{owner.job}/read-token", {}),
        ("POST", "/v1/jobs/<job_id>/cancel"): (f"/v1/jobs/{owner.failed_job}/cancel", {}),
        ("POST", "/v1/jobs/<job_id>/retry"): (f"/v1/jobs/{owner.failed_job}/retry", {}),
        ("GET", "/v1/schedules/<schedule_id>"): (f"/v1/schedules/{owner.schedule}", {}),
        ("PATCH", "/v1/schedules/<schedule_id>"): (f"/v1/schedules/{owner.schedule}", {"json": {"enabled": False}}),
        ("DELETE", "/v1/schedules/<schedule_id>"): (f"/v1/schedules/{owner.schedule}", {}),
        ("POST", "/v1/schedules/<schedule_id>/pause"): (f"/v1/schedules/{owner.schedule}/pause", {}),
        ("POST", "/v1/schedules/<schedule_id>/resume"): (f"/v1/schedules/{owner.schedule}/resume", {}),
        ("POST", "/v1/schedules/<schedule_id>/trigger"): (f"/v1/schedules/{owner.schedule}/trigger", {}),
        ("GET", "/v1/schedules/<schedule_id>/runs"): (f"/v1/schedules/{owner.schedule}/runs", {}),
        ("GET", "/v1/datasets/<dataset_id>"): (f"/v1/datasets/{owner.dataset}", {}),
        ("GET", "/v1/datasets/<dataset_id>/rows"): (f"/v1/datasets/{owner.dataset}/rows", {}),
        ("GET", "/v1/datasets/<dataset_id>/rejects"): (f"/v1/datasets/{owner.dataset}/rejects", {}),
        ("POST", "/v1/datasets/<dataset_id>/ingest"): (f"/v1/datasets/{owner.dataset}/ingest?mode=replace", csv),
        ("DELETE", "/v1/datasets/<dataset_id>"): (f"/v1/datasets/{owner.dataset}", {}),
        ("POST", "/v1/datasets:fetch"): (
            "/v1/datasets:fetch",
            {"json": {"url": "https://93.184.215.14/more.csv", "dataset_id": owner.dataset, "mode": "replace"}},
        ),
        ("GET", "/v1/files/<file_id>"): (f"/v1/files/{owner.file}", {}),
        ("GET", "/v1/keys/<key_id>"): (f"/v1/keys/{owner.key}", {}),
        ("POST", "/v1/keys/<key_id>/revoke"): (f"/v1/keys/{owner.key}/revoke", {}),
        ("GET", "/v1/webhooks/<webhook_id>"): (f"/v1/webhooks/{owner.webhook}", {}),
        ("GET", "/v1/webhooks/<webhook_id>/secret"): (f"/v1/webhooks/{owner.webhook}/secret", {}),
        ("DELETE", "/v1/webhooks/<webhook_id>"): (f"/v1/webhooks/{owner.webhook}", {}),
        ("POST", "/v1/webhooks/<webhook_id>/rotate"): (f"/v1/webhooks/{owner.webhook}/rotate", {"json": {}}),
        ("GET", "/v1/webhooks/<webhook_id>/deliveries"): (f"/v1/webhooks/{owner.webhook}/deliveries", {}),
        ("POST", "/v1/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver"): (
            f"/v1/webhooks/{owner.webhook}/deliveries/{owner.delivery}/redeliver",
            {},
        ),
        ("GET", "/v1/workflows/<workflow_id>"): (f"/v1/workflows/{owner.workflow}", {}),
        ("GET", "/v1/workflows/<workflow_id>/events"): (f"/v1/workflows/{owner.workflow}/events", {}),
        ("GET", "/v1/workflows/<workflow_id>/stream"): (f"/v1/workflows/{owner.workflow}/stream", {}),
        ("POST", "/v1/workflows/<workflow_id>/cancel"): (f"/v1/workflows/{owner.workflow}/cancel", {}),
        ("POST", "/v1/workflows/<workflow_id>/retry"): (f"/v1/workflows/{owner.workflow}/retry", {}),
        ("GET", "/v1/failures/<fingerprint>"): (f"/v1/failures/{owner.failure}", {}),
        ("POST", "/v1/failures/<fingerprint>/retry"): (f"/v1/failures/{owner.failure}/retry", {"json": {}}),
        ("POST", "/v1/failures/<fingerprint>/cancel"): (f"/v1/failures/{owner.failure}/cancel", {"json": {}}),
    }


# List routes and the ids of the other tenant's objects each must not show.
LISTS = {
    "/v1/jobs": lambda t: {t.job, t.failed_job},
    "/v1/datasets": lambda t: {t.dataset},
    "/v1/schedules": lambda t: {t.schedule},
    "/v1/keys": lambda t: {t.key},
    "/v1/webhooks": lambda t: {t.webhook},
    "/v1/workflows": lambda t: {t.workflow},
    "/v1/failures": lambda t: {t.failure},
}
# Routes that take no id and list nothing of a tenant's own (or are covered by LISTS / the create tests below).
NO_OBJECT = {
    ("POST", "/v1/jobs"),
    ("POST", "/v1/jobs:batch"),
    ("POST", "/v1/schedules"),
    ("POST", "/v1/datasets"),
    ("POST", "/v1/keys"),
    ("POST", "/v1/webhooks"),
    ("POST", "/v1/workflows"),  # test_a_workflow_naming_another_tenants_dataset_is_refused
    ("GET", "/v1/job-types"),
    ("GET", "/v1/queues"),
    # a queue name, not a tenant's object: test_queue_operations_act_on_the_callers_jobs_only
    ("POST", "/v1/queues/<queue>/pause"),
    ("POST", "/v1/queues/<queue>/resume"),
    ("POST", "/v1/queues/<queue>/drain"),
    ("POST", "/v1/jobs:retry"),
    ("GET", "/v1/usage"),  # the caller's own counts: test_usage_counts_only_the_callers_objects
    *(("GET", path) for path in LISTS),
}


def v1_routes(app: APIFlask) -> set[tuple[str, str]]:
    return {(method, rule.rule) for rule in app.url_map.iter_rules() if rule.rule.startswith("/v1/")
            for method in rule.methods - {"HEAD", "OPTIONS"}}  # fmt: skip


def test_the_matrix_covers_every_route(app: APIFlask) -> None:
    dummy = Tenant("x", app.test_client(), *[MISSING] * 6)
    assert v1_routes(app) - set(by_id(dummy)) - NO_OBJECT == set(), "add the new route to the isolation matrix"


def missing_like(response: Any) -> dict[str, Any]:
    """What a 404 says, with the id taken out (so that another tenant's and a missing object's compare equal)."""
    body = dict(response.json)
    body["detail"] = body["detail"].split(" with id ")[0]
    body.pop("instance")
    return body


def test_another_tenants_objects_are_404_like_missing_ones(tenants: tuple[Tenant, Tenant], app: APIFlask) -> None:
    for caller, owner in (tenants, tenants[::-1]):
        missing = Tenant(owner.name, owner.client, *[MISSING] * 5, "0123456789abcdef")
        missing_requests = by_id(missing)
        for route, (path, kwargs) in by_id(owner).items():
            method = route[0]
            response = caller.client.open(path, method=method, **kwargs)
            assert response.status_code == 404, (caller.name, route, response.status_code, response.get_data())
            assert response.mimetype == "application/problem+json"
            nothing_path, nothing_kwargs = missing_requests[route]
            nothing = caller.client.open(nothing_path, method=method, **nothing_kwargs)
            assert nothing.status_code == 404 and missing_like(response) == missing_like(nothing), route
    # and nothing of theirs changed
    for owner in tenants:
        client = owner.client
        assert client.get(f"/v1/jobs/{owner.failed_job}").json["status"] == "failed"
        assert [e["kind"] for e in client.get(f"/v1/jobs/{owner.failed_job}/events").json["items"]][-1] == "failed"
        schedule = client.get(f"/v1/schedules/{owner.schedule}").json
        assert schedule["enabled"] is True and client.get(f"/v1/schedules/{owner.schedule}/runs").json["items"] == []
        dataset = client.get(f"/v1/datasets/{owner.dataset}").json
        assert (dataset["status"], dataset["row_count"], dataset["version"]) == ("ready", 3, 1)
        assert client.get(f"/v1/files/{owner.file}").status_code == 200
        assert client.get(f"/v1/keys/{owner.key}").json["revoked_at"] is None
        webhook = client.get(f"/v1/webhooks/{owner.webhook}").json
        assert webhook["previous_secret_expires_at"] is None  # never rotated
        [delivery] = client.get(f"/v1/webhooks/{owner.webhook}/deliveries").json["items"]
        assert delivery["id"] == owner.delivery
        assert len(client.get("/v1/jobs?type=webhook_delivery").json["items"]) == 1  # never redelivered
        flow = client.get(f"/v1/workflows/{owner.workflow}").json
        assert (flow["status"], flow["retries"], flow["steps"][0]["attempts"]) == ("failed", 0, 1)


def test_lists_show_only_the_callers_objects(tenants: tuple[Tenant, Tenant]) -> None:
    for caller, owner in (tenants, tenants[::-1]):
        for path, theirs in LISTS.items():
            listed = {item.get("id", item.get("fingerprint")) for item in caller.client.get(path).json["items"]}
            assert listed and not listed & theirs(owner), (caller.name, path)
        queues = {q["name"]: q for q in caller.client.get("/v1/queues").json["items"]}
        # the caller's own jobs only: an echo that succeeded, one that failed, its dataset's ingest, its workflow's
        # step (all in the last minute); and its webhook delivery, made and never run
        finished = (queues["default"]["succeeded_last_minute"], queues["default"]["failed_last_minute"])
        assert finished == (3, 1), caller.name
        unfinished = {name: sum(q["counts"].values()) for name, q in queues.items()}
        assert sum(unfinished.values()) == 1, (caller.name, unfinished)


def test_usage_counts_only_the_callers_objects(tenants: tuple[Tenant, Tenant]) -> None:
    acme, globex = tenants
    assert (
        acme.client.post(
            "/v1/jobs", json={"type": "echo", "payload": {"message": "later"}, "delay_seconds": 600}
        ).status_code
        == 202
    )
    for caller, unfinished in ((acme, 1), (globex, 0)):
        usage = caller.client.get("/v1/usage").json
        assert usage["tenant_id"] == caller.name
        assert usage["active_jobs"]["used"] == unfinished + 1  # and its failed job's webhook delivery, queued
        assert usage["schedules"]["used"] == 1
        assert usage["dataset_bytes"]["used"] == len(CSV)


@pytest.mark.parametrize(
    "job_type",
    ["dataset_aggregate", "dataset_export", "dataset_ingest", "dataset_query", "dataset_join", "dataset_join:right"],
)
def test_a_payload_naming_another_tenants_dataset_is_refused_like_a_missing_one(
    tenants: tuple[Tenant, Tenant], job_type: str
) -> None:
    caller, owner = tenants
    payloads = {
        "dataset_aggregate": lambda dataset: {"dataset_id": dataset, "metrics": [{"op": "count"}]},
        "dataset_export": lambda dataset: {"dataset_id": dataset, "format": "csv"},
        "dataset_ingest": lambda dataset: {"dataset_id": dataset, "file_id": owner.file},
        "dataset_query": lambda dataset: {"dataset_id": dataset, "where": "delay > 1"},
        "dataset_join": lambda dataset: {"left": {"dataset_id": dataset}, "right": {"dataset_id": caller.dataset},
                                         "on": ["carrier"]},
        "dataset_join:right": lambda dataset: {"left": {"dataset_id": caller.dataset},
                                               "right": {"dataset_id": dataset}, "on": ["carrier"]},
    }  # fmt: skip
    fields = {"dataset_join": "payload.left.dataset_id", "dataset_join:right": "payload.right.dataset_id"}
    payload, field = payloads[job_type], fields.get(job_type, "payload.dataset_id")
    job_type = job_type.partition(":")[0]
    theirs = caller.client.post("/v1/jobs", json={"type": job_type, "payload": payload(owner.dataset)})
    missing = caller.client.post("/v1/jobs", json={"type": job_type, "payload": payload(MISSING)})
    assert theirs.status_code == missing.status_code == 422
    assert theirs.json["detail"].replace(owner.dataset, MISSING) == missing.json["detail"]
    assert theirs.json["errors"] == missing.json["errors"] == [{"field": field,
                                                                "message": "no such dataset"}]  # fmt: skip
    if job_type != "dataset_ingest":  # (its payload names the owner's file too)
        mine = caller.client.post("/v1/jobs", json={"type": job_type, "payload": payload(caller.dataset)})
        assert mine.status_code == 202, mine.json  # the same payload naming the caller's own dataset is accepted
    # batches and schedules go through the same check
    batch = caller.client.post("/v1/jobs:batch", json={"jobs": [{"type": job_type, "payload": payload(owner.dataset)}]})
    assert batch.json["rejected"] == 1 and batch.json["items"][0]["status"] == 422  # fmt: skip


def test_a_workflow_naming_another_tenants_dataset_is_refused(tenants: tuple[Tenant, Tenant], app: APIFlask) -> None:
    """At submit, like a job's payload; and when a step is released with a dataset id taken from a parent's result
    (a value no submit check saw), the step fails as one naming no dataset would, and no job is made."""
    caller, owner = tenants
    export = {"name": "export", "type": "dataset_export"}

    def submit(dataset: str) -> Any:
        steps = [{**export, "payload": {"dataset_id": dataset, "format": "csv"}}]
        return caller.client.post("/v1/workflows", json={"name": "steal", "steps": steps})

    theirs, missing = submit(owner.dataset), submit(MISSING)
    assert theirs.status_code == missing.status_code == 422
    assert theirs.json["detail"].replace(owner.dataset, MISSING) == missing.json["detail"]
    assert theirs.json["errors"] == missing.json["errors"]
    by_ref = caller.client.post("/v1/workflows", json={"name": "steal", "steps": [
        {"name": "source", "type": "echo", "payload": {"message": owner.dataset}},
        {**export, "depends_on": ["source"],
         "payload": {"dataset_id": {"$ref": "steps.source.result.message"}, "format": "csv"}},
    ]})  # fmt: skip
    assert by_ref.status_code == 202, by_ref.json
    run(app, by_ref.json["steps"][0]["job_id"])
    flow = caller.client.get(f"/v1/workflows/{by_ref.json['id']}").json
    step = flow["steps"][1]
    assert (step["status"], step["job_id"], step["jobs"]["total"]) == ("failed", None, 0)
    assert step["error"]["errors"] == [{"field": "payload.dataset_id", "message": "no such dataset"}]
    assert caller.client.get("/v1/jobs?type=dataset_export").json["items"] == []


def test_an_ingest_naming_another_tenants_file_is_refused(tenants: tuple[Tenant, Tenant]) -> None:
    caller, owner = tenants
    payload = {"dataset_id": caller.dataset, "file_id": owner.file}
    refused = caller.client.post("/v1/jobs", json={"type": "dataset_ingest", "payload": payload})
    assert refused.status_code == 422 and refused.json["errors"][0]["field"] == "payload.file_id"


def test_the_worker_checks_the_tenant_again_when_the_job_runs(tenants: tuple[Tenant, Tenant], app: APIFlask) -> None:
    """A job that names another tenant's dataset without passing the submit check (a row written behind the API's
    back, or a dataset that changed hands) fails when it runs, and touches nothing of the other tenant's."""
    caller, owner = tenants
    ext = app.extensions["conveyor"]
    sessions = make_sessionmaker(ext.engine)
    jobs = {}
    with sessions() as session:
        for job_type, payload in (
            ("dataset_aggregate", {"dataset_id": owner.dataset, "metrics": [{"op": "count"}], "name": "stolen"}),
            ("dataset_export", {"dataset_id": owner.dataset, "format": "csv"}),
            ("dataset_ingest", {"dataset_id": owner.dataset, "file_id": owner.file, "mode": "replace"}),
            ("dataset_query", {"dataset_id": owner.dataset, "name": "stolen rows"}),
            (
                "dataset_join",
                {
                    "left": {"dataset_id": caller.dataset},
                    "right": {"dataset_id": owner.dataset},
                    "on": ["carrier"],
                    "name": "stolen join",
                },
            ),
        ):
            request = JobRequest(type=job_type, payload=payload, tenant_id=caller.name, max_attempts=1)
            job = build_job(ext.registry, ext.settings.queues, request, now=utcnow())
            session.add(job)
            jobs[job_type] = str(job.id)
        session.commit()
        datasets_before = session.scalar(select(func.count()).select_from(Dataset))
    for job_id in jobs.values():
        run(app, job_id)
    for job_type, job_id in jobs.items():
        job = caller.client.get(f"/v1/jobs/{job_id}").json
        assert job["status"] == "failed", (job_type, job)
        assert owner.dataset in job["error"]["message"]  # "no dataset with id ...": not found in its tenant
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Dataset)) == datasets_before  # no aggregate output
        theirs = session.get_one(Dataset, uuid.UUID(owner.dataset))
        assert (theirs.version, theirs.row_count, theirs.error) == (1, 3, None)


def test_idempotency_and_unique_keys_are_per_tenant(tenants: tuple[Tenant, Tenant]) -> None:
    made = []
    for tenant in tenants:
        body = {"type": "echo", "payload": {"message": tenant.name}, "unique_key": "nightly-report"}
        response = tenant.client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "same-key"})
        assert response.status_code == 202, response.json  # not the other tenant's job, not a mismatch
        made.append(response.json["id"])
    assert made[0] != made[1]


@pytest.mark.parametrize("field", [{"tenant_id": "globex"}, {"status": "succeeded"}, {"attempt": 3},
                                   {"id": MISSING}, {"worker": "w"}])  # fmt: skip
def test_fields_a_client_must_not_set_are_refused(client: FlaskClient, app: APIFlask, field: dict[str, Any]) -> None:
    response = client.post("/v1/jobs", json={"type": "echo", "payload": {"message": "x"}, **field})
    assert response.status_code == 422 and response.mimetype == "application/problem+json"
    assert response.json["errors"][0]["field"] == next(iter(field))
    schedule = client.post("/v1/schedules", json={"name": "s", "type": "echo", "interval_seconds": 60,
                                                  "payload": {"message": "x"}, **field})  # fmt: skip
    assert schedule.status_code == 422
    key = client.post("/v1/keys", json={"scopes": ["admin"], **field})
    assert key.status_code == 422
    with make_sessionmaker(app.extensions["conveyor"].engine)() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
        assert session.scalar(select(func.count()).select_from(Schedule)) == 0
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 1  # the client's own


def test_queue_operations_act_on_the_callers_jobs_only(tenants: tuple[Tenant, Tenant], app: APIFlask) -> None:
    """A tenant's pause holds its own jobs only, its drain cancels its own, its bulk retry retries its own: the other
    tenant's queue state and jobs stay as they were."""
    acme, globex = tenants
    assert acme.client.post("/v1/queues/default/pause", json={"reason": "acme only"}).status_code == 200
    [globex_default] = [q for q in globex.client.get("/v1/queues").json["items"] if q["name"] == "default"]
    assert globex_default["paused"] is None
    waiting = {t.name: t.client.post("/v1/jobs", json={"type": "echo", "payload": {"message": "w"}}).json["id"]
               for t in tenants}  # fmt: skip
    with job_runner(app.extensions["conveyor"].settings, load_registry()) as run_job:
        assert run_job(waiting["acme"]).status == "queued"  # paused: not claimed
        assert run_job(waiting["globex"]).status == "succeeded"
    extra = globex.client.post("/v1/jobs", json={"type": "echo", "payload": {"message": "w"}}).json["id"]
    assert acme.client.post("/v1/queues/default/drain", json={"reason": "acme"}).json == {"cancelled": 1}
    assert globex.client.get(f"/v1/jobs/{extra}").json["status"] == "queued"
    assert acme.client.post("/v1/jobs:retry", json={}).json == {"retried": 1, "more": False}
    assert acme.client.get(f"/v1/jobs/{acme.failed_job}").json["status"] == "queued"
    assert globex.client.get(f"/v1/jobs/{globex.failed_job}").json["status"] == "failed"
    assert globex.client.post("/v1/queues/default/resume").json["paused"] is None
    [acme_default] = [q for q in acme.client.get("/v1/queues").json["items"] if q["name"] == "default"]
    assert acme_default["paused"]["reason"] == "acme only"  # globex's resume lifted nothing of acme's
