"""/v1/workflows on each backend: the API's answers, and the workflow's course as the real executor runs its jobs
(tests/support/worker.job_runner; the broker is the only thing skipped: the test delivers each queued job)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from core.models import Job, JobEvent
from core.queue import RecordingPublisher
from core.registry import load_registry
from core.workflows.models import WorkflowEvent
from tests.support.worker import RunJob, job_runner


@pytest.fixture
def run_job(app: APIFlask, publisher: RecordingPublisher) -> Iterator[RunJob]:
    with job_runner(app.extensions["conveyor"].settings, load_registry(), publisher) as run:
        yield run


def queued(app: APIFlask) -> list[uuid.UUID]:
    with app.extensions["conveyor"].sessions() as session:
        query = select(Job.id).where(Job.status == "queued").order_by(Job.created_at, Job.map_index)
        return list(session.scalars(query))


def run_all(app: APIFlask, run_job: RunJob, *, limit: int = 5000) -> int:
    """Deliver every queued job (and those their completions release) until none is left; returns how many ran."""
    ran = 0
    while batch := queued(app):
        for job_id in batch:
            run_job(job_id)
            ran += 1
        assert ran <= limit, "the workflow keeps making jobs"
    return ran


def submit(client: FlaskClient, steps: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/workflows", json={"name": "test", "steps": steps, **fields})
    assert response.status_code == 202, response.json
    body: dict[str, Any] = response.json
    assert response.headers["Location"] == f"/v1/workflows/{body['id']}"
    return body


def workflow(client: FlaskClient, workflow_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/workflows/{workflow_id}")
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json
    return body


def step(body: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in body["steps"] if s["name"] == name)
    return found


def result(client: FlaskClient, job_id: str) -> Any:
    response = client.get(f"/v1/jobs/{job_id}/result")
    assert response.status_code == 200, response.json
    return response.json["data"]


def ref(path: str) -> dict[str, str]:
    return {"$ref": path}


def collect(name: str, *parents: str, **payload: Any) -> dict[str, Any]:
    return {"name": name, "type": "collect", "payload": payload, "depends_on": list(parents)}


def test_a_chain_passes_each_result_on(client: FlaskClient, app: APIFlask, run_job: RunJob) -> None:
    made = submit(client, [
        collect("a", value={"n": 1}),
        collect("b", "a", value=ref("steps.a.result.value.n"), items=["x"]),
        collect("c", "b", items=[ref("steps.b.result.value"), ref("steps.b.result.items[0]")]),
    ])  # fmt: skip
    assert [s["status"] for s in made["steps"]] == ["running", "waiting", "waiting"]
    assert made["status"] == "running" and made["progress"] == {"steps_finished": 0, "steps_total": 3,
                                                                 "jobs_finished": 0, "jobs_total": 1}  # fmt: skip
    assert len(queued(app)) == 1  # only the first layer
    assert run_all(app, run_job) == 3
    done = workflow(client, made["id"])
    assert done["status"] == "succeeded" and done["finished_at"] is not None
    assert [s["status"] for s in done["steps"]] == ["succeeded"] * 3
    assert result(client, step(done, "c")["job_id"])["items"] == [1, "x"]
    job = client.get(f"/v1/jobs/{step(done, 'b')['job_id']}").json
    assert (job["workflow_id"], job["workflow_step"], job["map_index"]) == (made["id"], "b", None)
    assert job["payload"]["value"] == 1  # resolved when it was released
    kinds = [e["kind"] for e in client.get(f"/v1/workflows/{made['id']}/events").json["items"]]
    assert kinds == ["workflow_submitted", "step_released", "step_succeeded", "step_released", "step_succeeded",
                     "step_released", "step_succeeded", "workflow_succeeded"]  # fmt: skip


def test_a_diamond_releases_its_fan_in_once(client: FlaskClient, app: APIFlask, run_job: RunJob) -> None:
    made = submit(client, [
        collect("top", value=3),
        collect("left", "top", value=ref("steps.top.result.value")),
        collect("right", "top", value="r"),
        collect("bottom", "left", "right", items=[ref("steps.left.result.value"), ref("steps.right.result.value")]),
    ])  # fmt: skip
    assert run_all(app, run_job) == 4
    done = workflow(client, made["id"])
    assert done["status"] == "succeeded"
    assert result(client, step(done, "bottom")["job_id"])["items"] == [3, "r"]
    with app.extensions["conveyor"].sessions() as session:
        bottom_jobs = session.scalar(select(func.count()).where(Job.workflow_step == "bottom"))
        releases = session.scalar(select(func.count()).where(WorkflowEvent.kind == "step_released",
                                                             WorkflowEvent.step == "bottom"))  # fmt: skip
    assert (bottom_jobs, releases) == (1, 1)


def test_a_thousand_way_map_fans_in_with_results_in_order(client: FlaskClient, app: APIFlask, run_job: RunJob) -> None:
    made = submit(client, [
        collect("source", items=list(range(1000))),
        {"name": "square", "type": "collect", "depends_on": ["source"], "map": ref("steps.source.result.items"),
         "payload": {"value": ref("item"), "items": [ref("index")]}},
        collect("sink", "square", items=ref("steps.square.result")),
    ])  # fmt: skip
    assert run_all(app, run_job) == 1002
    done = workflow(client, made["id"])
    assert done["status"] == "succeeded"
    square = step(done, "square")
    assert square["mapped"] and square["jobs"] == {"total": 1000, "succeeded": 1000, "failed": 0, "cancelled": 0,
                                                   "unfinished": 0}  # fmt: skip
    gathered = result(client, step(done, "sink")["job_id"])["items"]
    assert [item["value"] for item in gathered] == list(range(1000))
    assert [item["items"] for item in gathered] == [[i] for i in range(1000)]
    assert done["progress"] == {"steps_finished": 3, "steps_total": 3, "jobs_finished": 1002, "jobs_total": 1002}
    with app.extensions["conveyor"].sessions() as session:
        assert session.scalar(select(func.count()).where(Job.workflow_step == "sink")) == 1


def test_a_map_over_an_empty_list_succeeds_with_no_jobs(client: FlaskClient, app: APIFlask, run_job: RunJob) -> None:
    made = submit(client, [
        {"name": "each", "type": "collect", "map": [], "payload": {"value": ref("item")}},
        collect("after", "each", items=ref("steps.each.result")),
    ])  # fmt: skip
    assert run_all(app, run_job) == 1
    done = workflow(client, made["id"])
    assert done["status"] == "succeeded" and step(done, "each")["jobs"]["total"] == 0
    assert result(client, step(done, "after")["job_id"])["items"] == []


def test_a_reference_to_an_absent_field_fails_that_step_naming_it(
    client: FlaskClient, app: APIFlask, run_job: RunJob
) -> None:
    made = submit(client, [
        collect("a", value={"n": 1}),
        collect("b", "a", value=ref("steps.a.result.value.missing")),
        collect("c", "b"),
    ])  # fmt: skip
    assert run_all(app, run_job) == 1
    done = workflow(client, made["id"])
    b = step(done, "b")
    assert b["status"] == "failed" and b["job_id"] is None
    assert b["error"]["type"] == "ReferenceMissing"
    assert b["error"]["message"] == ("steps.a.result.value.missing: the result of step 'a'.value has no field "
                                     "'missing'")  # fmt: skip
    assert (done["status"], done["failed_step"]) == ("failed", "b")
    assert step(done, "c")["status"] == "cancelled"


def test_fail_fast_cancels_every_unfinished_step(client: FlaskClient, app: APIFlask, run_job: RunJob) -> None:
    made = submit(client, [
        collect("ok"),
        collect("boom", fail=True),
        collect("other"),
        collect("after", "boom"),
    ])  # fmt: skip
    ids = {s["name"]: s["job_id"] for s in made["steps"]}
    run_job(ids["ok"])
    run_job(ids["boom"])
    done = workflow(client, made["id"])
    assert (done["status"], done["failed_step"]) == ("failed", "boom")
    assert done["error"]["type"] == "CollectRefused" and done["finished_at"] is not None
    assert [s["status"] for s in done["steps"]] == ["succeeded", "failed", "cancelled", "cancelled"]
    other = client.get(f"/v1/jobs/{ids['other']}").json
    assert other["status"] == "cancelled" and other["error"]["type"] == "WorkflowCancelled"
    assert queued(app) == []


def test_continue_lets_independent_branches_finish_and_skips_dependants(
    client: FlaskClient, app: APIFlask, run_job: RunJob
) -> None:
    made = submit(client, [
        collect("boom", fail=True),
        collect("after", "boom"),
        collect("later", "after"),
        collect("other"),
        collect("other_next", "other"),
    ], failure_policy="continue")  # fmt: skip
    assert run_all(app, run_job) == 3
    done = workflow(client, made["id"])
    assert [s["status"] for s in done["steps"]] == ["failed", "skipped", "skipped", "succeeded", "succeeded"]
    assert (done["status"], done["failed_step"]) == ("failed", "boom")
    assert step(done, "after")["error"] == {"type": "Skipped", "message": "step 'boom' failed"}


def test_cancel_stops_every_unfinished_step(client: FlaskClient, app: APIFlask, run_job: RunJob) -> None:
    made = submit(client, [collect("a"), collect("b", "a"), collect("c")])
    run_job(step(made, "a")["job_id"])  # b is released, c still queued
    cancelled = client.post(f"/v1/workflows/{made['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.json
    body = cancelled.json
    assert body["status"] == "cancelled" and body["finished_at"] is not None
    assert [s["status"] for s in body["steps"]] == ["succeeded", "cancelled", "cancelled"]
    assert queued(app) == []
    assert client.post(f"/v1/workflows/{made['id']}/cancel").status_code == 200  # twice is harmless
    finished = submit(client, [collect("only")])
    run_all(app, run_job)
    refused = client.post(f"/v1/workflows/{finished['id']}/cancel")
    assert refused.status_code == 409 and refused.mimetype == "application/problem+json"


def test_a_running_job_of_a_cancelled_workflow_stops_at_its_next_check(
    client: FlaskClient, app: APIFlask, run_job: RunJob
) -> None:
    made = submit(client, [{"name": "slow", "type": "sleep", "payload": {"seconds": 30}}, collect("next", "slow")])
    job_id = step(made, "slow")["job_id"]
    with app.extensions["conveyor"].sessions() as session, session.begin():
        session.get_one(Job, uuid.UUID(job_id)).status = "running"  # as a worker's claim leaves it
    body = client.post(f"/v1/workflows/{made['id']}/cancel").json
    assert body["status"] == "cancelled" and body["finished_at"] is None  # its job is still stopping
    assert client.get(f"/v1/jobs/{job_id}").json["cancel_requested"] is True
    assert client.post(f"/v1/workflows/{made['id']}/retry").status_code == 409  # not until it has stopped


def test_retry_reruns_only_the_failed_and_skipped_steps(client: FlaskClient, app: APIFlask, run_job: RunJob) -> None:
    made = submit(client, [
        collect("first", value=7),
        {"name": "flaky", "type": "fail", "payload": {"times": 1}, "max_attempts": 1, "depends_on": ["first"]},
        collect("last", "flaky", value=ref("steps.first.result.value")),
        collect("aside"),
    ])  # fmt: skip
    run_job(step(made, "first")["job_id"])
    flaky = step(workflow(client, made["id"]), "flaky")["job_id"]
    run_job(flaky)  # fails: fail_fast cancels `aside` (queued) and `last` (waiting)
    failed = workflow(client, made["id"])
    assert failed["status"] == "failed" and [s["status"] for s in failed["steps"]] == [
        "succeeded", "failed", "cancelled", "cancelled"]  # fmt: skip
    retried = client.post(f"/v1/workflows/{made['id']}/retry")
    assert retried.status_code == 202, retried.json
    assert retried.json["status"] == "running" and retried.json["retries"] == 1
    assert run_all(app, run_job) == 3  # flaky's second attempt, last, and aside's new job
    done = workflow(client, made["id"])
    assert done["status"] == "succeeded" and done["failed_step"] is None
    assert step(done, "flaky")["job_id"] == flaky  # the same job, one more attempt
    assert client.get(f"/v1/jobs/{flaky}").json["attempt"] == 2
    first = client.get(f"/v1/jobs/{step(done, 'first')['job_id']}").json
    assert first["attempt"] == 1  # never ran again
    assert step(done, "aside")["job_id"] != step(failed, "aside")["job_id"]  # a cancelled job is replaced
    assert result(client, step(done, "last")["job_id"])["value"] == 7
    assert client.post(f"/v1/workflows/{made['id']}/retry").status_code == 409  # succeeded


def test_a_workflows_job_is_retried_with_its_workflow(client: FlaskClient, app: APIFlask, run_job: RunJob) -> None:
    made = submit(client, [collect("boom", fail=True)])
    run_all(app, run_job)
    refused = client.post(f"/v1/jobs/{step(made, 'boom')['job_id']}/retry")
    assert refused.status_code == 409 and f"/v1/workflows/{made['id']}/retry" in refused.json["detail"]


def test_on_complete_receives_the_batch_outcome(client: FlaskClient, app: APIFlask, run_job: RunJob) -> None:
    made = submit(client, [collect("a"), collect("b", fail=True), collect("c")], failure_policy="continue",
                  on_complete={"type": "collect", "payload": {"value": ref("batch")}})  # fmt: skip
    assert run_all(app, run_job) == 4
    done = workflow(client, made["id"])
    on_complete = step(done, "on_complete")
    assert on_complete["status"] == "succeeded" and on_complete["depends_on"] == ["a", "b", "c"]
    batch = result(client, on_complete["job_id"])["value"]
    ids = {s["name"]: s["job_id"] for s in done["steps"]}
    assert (batch["total"], batch["succeeded"], batch["failed"], batch["cancelled"]) == (3, 2, 1, 0)
    assert sorted(batch["succeeded_ids"]) == sorted([ids["a"], ids["c"]]) and batch["failed_ids"] == [ids["b"]]
    assert done["status"] == "failed"  # b failed; the callback still ran


def test_on_complete_runs_after_fail_fast_cancelled_the_rest(
    client: FlaskClient, app: APIFlask, run_job: RunJob
) -> None:
    made = submit(client, [collect("boom", fail=True), collect("other")],
                  on_complete={"type": "collect", "payload": {"value": ref("batch")}})  # fmt: skip
    run_job(step(made, "boom")["job_id"])
    assert run_all(app, run_job) == 1  # the callback; `other` was cancelled
    batch = result(client, step(workflow(client, made["id"]), "on_complete")["job_id"])["value"]
    assert (batch["failed"], batch["cancelled"], batch["succeeded"]) == (1, 1, 0)


def test_an_idempotency_key_makes_a_resubmit_safe(client: FlaskClient, app: APIFlask) -> None:
    body = {"name": "once", "steps": [collect("a")]}
    first = client.post("/v1/workflows", json=body, headers={"Idempotency-Key": "k1"})
    again = client.post("/v1/workflows", json=body, headers={"Idempotency-Key": "k1"})
    assert (first.status_code, again.status_code) == (202, 200) and first.json["id"] == again.json["id"]
    assert len(queued(app)) == 1
    other = client.post("/v1/workflows", json={**body, "name": "twice"}, headers={"Idempotency-Key": "k1"})
    assert other.status_code == 422 and other.json["type"] == "urn:conveyor:problem:idempotency-key-reused"


def test_submit_publishes_the_first_layer_after_the_commit(client: FlaskClient, publisher: RecordingPublisher) -> None:
    made = submit(client, [collect("a"), collect("b"), collect("c", "a", "b")])
    assert {str(w.job_id) for w in publisher.sent} == {step(made, "a")["job_id"], step(made, "b")["job_id"]}


def test_list_and_read_are_paged_and_filtered(client: FlaskClient, app: APIFlask, run_job: RunJob) -> None:
    made = [submit(client, [collect("a")])["id"] for _ in range(3)]
    run_job(step(workflow(client, made[0]), "a")["job_id"])
    page = client.get("/v1/workflows?limit=2").json
    assert [w["id"] for w in page["items"]] == made[::-1][:2] and page["next_cursor"]
    rest = client.get(f"/v1/workflows?limit=2&cursor={page['next_cursor']}").json
    assert [w["id"] for w in rest["items"]] == [made[0]] and rest["next_cursor"] is None
    assert [w["id"] for w in client.get("/v1/workflows?status=succeeded").json["items"]] == [made[0]]
    assert client.get("/v1/workflows?status=bogus").status_code == 422
    assert client.get(f"/v1/workflows/{uuid.uuid4()}").status_code == 404
    assert client.get("/v1/workflows/not-a-uuid").status_code == 404
    events = client.get(f"/v1/workflows/{made[0]}/events?after=1").json["items"]
    assert events and all(e["id"] > 1 for e in events)


def test_the_stream_sends_the_workflow_until_it_finishes(client: FlaskClient, app: APIFlask, run_job: RunJob) -> None:
    made = submit(client, [collect("a")])
    run_all(app, run_job)
    response = client.get(f"/v1/workflows/{made['id']}/stream")
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    text = response.get_data(as_text=True)
    assert text.startswith("event: workflow\n") and '"status":"succeeded"' in text


BAD = [
    ([collect("a"), collect("a")], "steps[1].name", "a second step has this name"),
    ([collect("a", "a")], "steps[0].depends_on", "depends on itself"),
    ([collect("a", "nope")], "steps[0].depends_on", "depends on 'nope', which is not a step"),
    ([collect("a", "b"), collect("b", "a")], "steps", "cycle"),
    ([{"name": "a", "type": "nope"}], "steps[0].type", "no job type named 'nope'"),
    ([{"name": "a", "type": "echo", "payload": {"message": 5}}], "steps[0].payload.message", "valid string"),
    ([{"name": "a", "type": "echo", "payload": {}}], "steps[0].payload.message", "Field required"),
    ([{"name": "a", "type": "echo", "payload": {"message": "x"}, "queue": "nowhere"}], "steps[0].queue",
     "no worker consumes queue 'nowhere'"),
    ([collect("a"), collect("b", value=ref("steps.a.result"))], "steps[1].payload.value",
     "names step 'a', which is not among the steps it depends on"),
    ([collect("a", value=ref("item"))], "steps[0].payload.value", "only known in a mapped step"),
    ([collect("a", value=ref("steps.a"))], "steps[0].payload", "is not a reference"),
    ([collect("a", value=ref("batch"))], "steps[0].payload.value", "only known in the on_complete step"),
    ([{"name": "a", "type": "collect", "map": {"items": 1}}], "steps[0].map", "map is a list or"),
    ([{"name": "a", "type": "collect", "map": list(range(10_001))}], "steps[0].map", "WORKFLOW_MAP_LIMIT"),
]  # fmt: skip


@pytest.mark.parametrize(("steps", "field", "message"), BAD)
def test_a_bad_definition_is_a_422_naming_the_step(
    client: FlaskClient, app: APIFlask, steps: list[dict[str, Any]], field: str, message: str
) -> None:
    response = client.post("/v1/workflows", json={"name": "bad", "steps": steps})
    assert response.status_code == 422, response.json
    assert response.mimetype == "application/problem+json"
    assert any(e["field"] == field and message in e["message"] for e in response.json["errors"]), response.json
    assert "step" in response.json["detail"]
    with app.extensions["conveyor"].sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0  # nothing was made


@pytest.mark.parametrize("body", [
    {"steps": [collect("a")]},
    {"name": "x", "steps": []},
    {"name": "x", "steps": [{"name": "a b", "type": "collect"}]},
    {"name": "x", "steps": [collect("a")], "failure_policy": "maybe"},
    {"name": "x", "steps": [collect("a")], "extra": 1},
    {"name": "x", "steps": "a"},
])  # fmt: skip
def test_a_malformed_body_is_a_422(client: FlaskClient, body: dict[str, Any]) -> None:
    response = client.post("/v1/workflows", json=body)
    assert response.status_code == 422 and response.mimetype == "application/problem+json", response.json


def test_workflow_routes_need_their_scopes(app: APIFlask, make_key: Any) -> None:
    from tests.support.keys import client_with

    reader = client_with(app, make_key(scopes=["jobs:read"]))
    assert reader.post("/v1/workflows", json={"name": "x", "steps": [collect("a")]}).status_code == 403
    assert reader.get("/v1/workflows").status_code == 200
    nobody = client_with(app, make_key(scopes=["datasets:read"]))
    assert nobody.get("/v1/workflows").status_code == 403


def test_the_job_events_of_a_cascade_name_the_workflow(client: FlaskClient, app: APIFlask, run_job: RunJob) -> None:
    made = submit(client, [collect("boom", fail=True), collect("other")])
    run_job(step(made, "boom")["job_id"])
    other = uuid.UUID(step(made, "other")["job_id"])
    with app.extensions["conveyor"].sessions() as session:
        [event] = session.scalars(select(JobEvent).where(JobEvent.job_id == other, JobEvent.kind == "cancelled"))
    assert event.detail == {"by": "workflow", "workflow_id": made["id"], "from": "queued"}


FLIGHTS = "carrier,origin,delay\nAA,JFK,5\nUA,JFK,7\nAA,LGA,1\nDL,JFK,\nUA,LGA,3\n"


def test_the_readme_report_ingests_aggregates_three_ways_and_exports_each(
    client: FlaskClient, app: APIFlask, run_job: RunJob
) -> None:
    """Upload without ingesting, then one workflow: ingest → three aggregates in parallel → an export of each →
    on_complete, on real job types."""
    uploaded = client.post("/v1/datasets?name=flights&ingest=false", data=FLIGHTS, content_type="text/csv")
    assert uploaded.status_code == 202 and uploaded.json["job"] is None, uploaded.json
    dataset, file_id = uploaded.json["dataset"]["id"], uploaded.json["file_id"]
    assert client.get(f"/v1/datasets/{dataset}").json["status"] == "pending" and queued(app) == []
    aggregate = {"by_carrier": {"group_by": ["carrier"], "metrics": [{"op": "avg", "column": "delay"}]},
                 "by_origin": {"group_by": ["origin"], "metrics": [{"op": "count"}]},
                 "worst": {"group_by": [], "metrics": [{"op": "max", "column": "delay"}]}}  # fmt: skip
    steps: list[dict[str, Any]] = [{"name": "ingest", "type": "dataset_ingest",
                                    "payload": {"dataset_id": dataset, "file_id": file_id}}]  # fmt: skip
    for name, spec in aggregate.items():
        steps.append({"name": name, "type": "dataset_aggregate", "depends_on": ["ingest"],
                      "payload": {"dataset_id": ref("steps.ingest.result.dataset_id"), **spec}})  # fmt: skip
        steps.append({"name": f"{name}_csv", "type": "dataset_export", "depends_on": [name],
                      "payload": {"dataset_id": ref(f"steps.{name}.result.dataset_id"), "format": "csv"}})  # fmt: skip
    made = submit(client, steps, on_complete={"type": "echo", "payload": {"message": "flights report done"}})
    assert run_all(app, run_job) == 8
    done = workflow(client, made["id"])
    assert done["status"] == "succeeded", done
    exports = {name: result(client, step(done, f"{name}_csv")["job_id"]) for name in aggregate}
    carrier_csv = client.get(exports["by_carrier"]["url"]).get_data(as_text=True)
    assert sorted(carrier_csv.splitlines()[1:]) == ['"AA",3', '"DL",', '"UA",5']
    assert exports["by_origin"]["rows"] == 2 and exports["worst"]["rows"] == 1
    assert result(client, step(done, "on_complete")["job_id"]) == {"message": "flights report done"}


def test_a_workflow_queries_then_joins_with_ids_from_earlier_steps(
    client: FlaskClient, app: APIFlask, run_job: RunJob
) -> None:
    """ingest flights and carriers → query (late flights) → join (with the carriers, ids by $ref in the nested
    sides) → export; the joined dataset's lineage reaches both files."""
    flights = client.post("/v1/datasets?name=flights&ingest=false", data=FLIGHTS, content_type="text/csv").json
    carriers = client.post("/v1/datasets?name=carriers&ingest=false", data="code,name\nAA,American\nUA,United\n",
                           content_type="text/csv").json  # fmt: skip
    steps: list[dict[str, Any]] = [
        {"name": "flights", "type": "dataset_ingest",
         "payload": {"dataset_id": flights["dataset"]["id"], "file_id": flights["file_id"]}},
        {"name": "carriers", "type": "dataset_ingest",
         "payload": {"dataset_id": carriers["dataset"]["id"], "file_id": carriers["file_id"]}},
        {"name": "late", "type": "dataset_query", "depends_on": ["flights"],
         "payload": {"dataset_id": ref("steps.flights.result.dataset_id"), "where": "delay >= 3",
                     "select": ["carrier", {"name": "minutes", "expr": "delay"}]}},
        {"name": "named", "type": "dataset_join", "depends_on": ["late", "carriers"],
         "payload": {"left": {"dataset_id": ref("steps.late.result.dataset_id")},
                     "right": {"dataset_id": ref("steps.carriers.result.dataset_id")},
                     "on": [{"left": "carrier", "right": "code"}], "how": "left"}},
        {"name": "csv", "type": "dataset_export", "depends_on": ["named"],
         "payload": {"dataset_id": ref("steps.named.result.dataset_id"), "format": "csv", "sort": ["carrier"]}},
    ]  # fmt: skip
    made = submit(client, steps)
    assert run_all(app, run_job) == 5
    done = workflow(client, made["id"])
    assert done["status"] == "succeeded", done
    exported = client.get(result(client, step(done, "csv")["job_id"])["url"]).get_data(as_text=True)
    assert exported.splitlines() == ['"carrier","minutes","code","name"', '"AA",5,"AA","American"',
                                     '"UA",7,"UA","United"', '"UA",3,"UA","United"']  # fmt: skip
    joined = client.get(f"/v1/datasets/{result(client, step(done, 'named')['job_id'])['dataset_id']}").json
    graph = [(n["name"], n["operation"]) for n in joined["lineage"]["graph"]]
    assert graph == [("flights query join carriers", "join"), ("flights query", "query"), ("carriers", "ingest"),
                     ("flights", "ingest")]  # fmt: skip


def test_a_batch_with_on_complete_reports_its_jobs_outcome(client: FlaskClient, app: APIFlask, run_job: RunJob) -> None:
    response = client.post("/v1/jobs:batch", json={
        "jobs": [{"type": "echo", "payload": {"message": "a"}}, {"type": "echo", "payload": {"nope": 1}},
                 {"type": "fail", "payload": {"times": 9}, "max_attempts": 1}],
        "on_complete": {"type": "collect", "payload": {"value": ref("batch")}},
    })  # fmt: skip
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["accepted"], body["rejected"]) == (2, 1) and body["workflow_id"] is not None
    assert [item["status"] for item in body["items"]] == [202, 422, 202]
    assert body["items"][0]["job"]["workflow_id"] == body["workflow_id"]
    assert run_all(app, run_job) == 3
    done = workflow(client, body["workflow_id"])
    summary = result(client, step(done, "on_complete")["job_id"])["value"]
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (2, 1, 1)
    assert summary["succeeded_ids"] == [body["items"][0]["job"]["id"]]
    assert summary["failed_ids"] == [body["items"][2]["job"]["id"]]


def test_a_batch_with_on_complete_refuses_per_job_keys(client: FlaskClient) -> None:
    response = client.post("/v1/jobs:batch", json={
        "jobs": [{"type": "echo", "payload": {"message": "a"}, "idempotency_key": "k"}],
        "on_complete": {"type": "echo", "payload": {"message": "done"}},
    })  # fmt: skip
    assert response.status_code == 422 and "idempotency_key" in response.json["errors"][0]["message"]
