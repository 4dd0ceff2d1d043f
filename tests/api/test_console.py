"""The console's pages and actions on each backend, under the Flask test client: sign-in and its cookie, the session
ending with its key, scopes deciding buttons and actions, CSRF on every POST, another tenant's objects as 404, bad
input as an HTML error page (never a 500). The browser tests (tests/e2e/test_console_browser.py) drive the same
pages in Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from core.registry import load_registry
from tests.api.conftest import KeyFactory
from tests.support.keys import client_with
from tests.support.worker import RunJob, job_runner

MISSING_JOB = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def run_job(app: APIFlask) -> Iterator[RunJob]:
    with job_runner(app.extensions["conveyor"].settings, load_registry()) as run:
        yield run


def browser(app: APIFlask) -> FlaskClient:
    """A client as a browser is: cookies, no Authorization header, over HTTPS (the cookie is Secure)."""
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    return client


def signed_in(app: APIFlask, key: str) -> FlaskClient:
    client = browser(app)
    response = client.post("/console/sign-in", data={"key": key})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def csrf(client: FlaskClient, path: str) -> str:
    html = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def test_signing_in_sets_a_safe_cookie_and_goes_where_asked(app: APIFlask, make_key: KeyFactory) -> None:
    client = browser(app)
    asked = client.get("/console/jobs?status=failed")
    assert asked.status_code == 302 and asked.location == "/console/sign-in?next=/console/jobs?status%3Dfailed"
    refused = client.post("/console/sign-in", data={"key": "cvk_" + "0" * 16 + "_" + "a" * 43})
    assert refused.status_code == 401 and "not known here" in refused.get_data(as_text=True)
    key = make_key()
    response = client.post("/console/sign-in", data={"key": key, "next": "/console/jobs?status=failed"})
    assert response.status_code == 302 and response.location == "/console/jobs?status=failed"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("conveyor_console=")
    for attribute in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/console"):
        assert attribute in cookie
    assert key.split("_")[2] not in cookie  # the key's id is in it, never its secret
    assert client.get("/console/jobs").status_code == 200


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/console", "/v1/jobs", ""])
def test_sign_in_goes_nowhere_but_the_console(app: APIFlask, make_key: KeyFactory, target: str) -> None:
    response = browser(app).post("/console/sign-in", data={"key": make_key(), "next": target})
    assert response.status_code == 302 and response.location == "/console"


def test_a_revoked_key_ends_its_sessions(app: APIFlask, make_key: KeyFactory, client: FlaskClient) -> None:
    key = make_key(tenant="default", scopes=["jobs:read"])
    console = signed_in(app, key)
    assert console.get("/console/jobs").status_code == 200
    [listed] = [k for k in client.get("/v1/keys").json["items"] if k["scopes"] == ["jobs:read"]]
    assert client.post(f"/v1/keys/{listed['id']}/revoke").status_code == 200
    app.extensions["conveyor"].authenticator.forget(listed["id"])  # other processes: within the key cache's seconds
    assert console.get("/console/jobs").status_code == 302


def test_signing_out_needs_the_token_and_ends_the_session(app: APIFlask, make_key: KeyFactory) -> None:
    console = signed_in(app, make_key())
    assert console.post("/console/sign-out").status_code == 403
    assert console.post("/console/sign-out", data={"csrf_token": csrf(console, "/console")}).status_code == 302
    assert console.get("/console").status_code == 302


def test_every_console_post_refuses_a_missing_or_forged_csrf_token(
    app: APIFlask, make_key: KeyFactory, client: FlaskClient, run_job: RunJob
) -> None:
    mine = make_objects(app, client, run_job, "acme")
    console = signed_in(app, make_key())
    paths = {**object_actions(mine), "/console/sign-out": "/console/sign-out",
             **{rule: rule.replace("<queue>", "default") for rule in QUEUE_ACTIONS}}  # fmt: skip
    assert console_rules(app, "POST") - {"/console/sign-in"} == set(paths), "a new console form: add it here"
    for path in paths.values():
        for data in ({"format": "csv"}, {"csrf_token": "forged", "format": "csv"}):
            response = console.post(path, data=data)
            assert response.status_code == 403 and "security token" in response.get_data(as_text=True), path
    assert client.get(f"/v1/jobs/{mine.job}").json["status"] == "failed"  # nothing was retried
    assert client.get(f"/v1/schedules/{mine.schedule}").json["enabled"] is True
    assert client.get("/v1/queues").json["items"][0]["paused"] is None
    assert console.get("/console").status_code == 200  # still signed in


def test_scopes_decide_the_buttons_and_the_actions(
    app: APIFlask, make_key: KeyFactory, client: FlaskClient, run_job: RunJob
) -> None:
    failed = client.post("/v1/jobs", json={"type": "fail", "payload": {"times": 5}, "max_attempts": 1}).json["id"]
    run_job(failed)
    fingerprint = client.get(f"/v1/jobs/{failed}").json["error_fingerprint"]
    reader = signed_in(app, make_key(scopes=["jobs:read"]))
    page = reader.get(f"/console/jobs/{failed}").get_data(as_text=True)
    assert "Retry job" not in page and "Cancel job" not in page
    token = csrf(reader, "/console")
    assert reader.post(f"/console/jobs/{failed}/retry", data={"csrf_token": token}).status_code == 403
    writer = signed_in(app, make_key(scopes=["jobs:read", "jobs:write"]))
    assert "Retry job" in writer.get(f"/console/jobs/{failed}").get_data(as_text=True)
    group = writer.get(f"/console/failures/{fingerprint}").get_data(as_text=True)
    assert "Retry all" not in group  # a whole group is an admin's
    token = csrf(writer, "/console")
    assert writer.post(f"/console/failures/{fingerprint}/retry", data={"csrf_token": token}).status_code == 403
    retried = writer.post(f"/console/jobs/{failed}/retry", data={"csrf_token": token})
    assert retried.status_code == 302 and client.get(f"/v1/jobs/{failed}").json["status"] == "queued"
    nobody = signed_in(app, make_key(scopes=["datasets:read"]))
    assert nobody.get("/console/jobs").status_code == 403


def test_a_group_is_retried_and_cancelled_from_its_page(
    app: APIFlask, make_key: KeyFactory, client: FlaskClient, run_job: RunJob
) -> None:
    jobs = [client.post("/v1/jobs", json={"type": "fail", "payload": {"times": 5, "message": f"order {n} broke"},
                                          "max_attempts": 1 if n < 3 else 4}).json["id"] for n in range(5)]  # fmt: skip
    for job_id in jobs:
        run_job(job_id)
    fingerprint = client.get(f"/v1/jobs/{jobs[0]}").json["error_fingerprint"]
    console = signed_in(app, make_key())
    page = console.get(f"/console/failures/{fingerprint}").get_data(as_text=True)
    assert "Retry all 3 failed" in page and "Cancel all 2 retrying" in page and "order &lt;n&gt; broke" in page
    token = csrf(console, "/console")
    assert console.post(f"/console/failures/{fingerprint}/cancel", data={"csrf_token": token}).status_code == 302
    assert "Cancelled 2 retrying jobs." in console.get("/console").get_data(as_text=True)
    assert console.post(f"/console/failures/{fingerprint}/retry", data={"csrf_token": token}).status_code == 302
    statuses = [client.get(f"/v1/jobs/{job_id}").json["status"] for job_id in jobs]
    assert statuses == ["queued"] * 3 + ["cancelled"] * 2


CSV = "carrier,delay\nAA,5\nUA,x\nAA,1\n"
# ?schema={"carrier": "string", "delay": "integer"}: line 3's delay is a reject
TYPED = "schema=%7B%22carrier%22%3A%20%22string%22%2C%20%22delay%22%3A%20%22integer%22%7D"


@dataclass
class Objects:
    job: str
    fingerprint: str
    schedule: str
    dataset: str
    file: str
    workflow: str


def make_objects(app: APIFlask, client: FlaskClient, run_job: RunJob, name: str) -> Objects:
    job = client.post("/v1/jobs", json={"type": "fail", "payload": {"times": 5, "message": f"{name} broke"},
                                        "max_attempts": 1}).json["id"]  # fmt: skip
    run_job(job)
    schedule = client.post("/v1/schedules", json={"name": f"{name}-nightly", "type": "echo", "cron": "0 2 * * *",
                                                  "payload": {"message": name}}).json["id"]  # fmt: skip
    uploaded = client.post(f"/v1/datasets?name={name}-flights&{TYPED}", data=CSV, content_type="text/csv").json
    run_job(uploaded["job"]["id"])
    fingerprint = client.get(f"/v1/jobs/{job}").json["error_fingerprint"]
    # failed: its second step names a field the first one's result lacks
    flow = client.post("/v1/workflows", json={"name": f"{name}-flow", "steps": [
        {"name": "only", "type": "echo", "payload": {"message": name}},
        {"name": "next", "type": "echo", "payload": {"message": {"$ref": "steps.only.result.nope"}},
         "depends_on": ["only"]}]}).json  # fmt: skip
    run_job(flow["steps"][0]["job_id"])
    return Objects(job, fingerprint, schedule, uploaded["dataset"]["id"], uploaded["job"]["payload"]["file_id"],
                   flow["id"])  # fmt: skip


def object_pages(o: Objects) -> dict[str, str]:
    return {
        "/console/jobs/<job_id>": f"/console/jobs/{o.job}",
        "/console/jobs/<job_id>/live": f"/console/jobs/{o.job}/live",
        "/console/failures/<fingerprint>": f"/console/failures/{o.fingerprint}",
        "/console/schedules/<schedule_id>": f"/console/schedules/{o.schedule}",
        "/console/datasets/<dataset_id>": f"/console/datasets/{o.dataset}",
        "/console/datasets/files/<file_id>": f"/console/datasets/files/{o.file}",
        "/console/workflows/<workflow_id>": f"/console/workflows/{o.workflow}",
        "/console/workflows/<workflow_id>/live": f"/console/workflows/{o.workflow}/live",
    }


def object_actions(o: Objects) -> dict[str, str]:
    return {
        "/console/jobs/<job_id>/cancel": f"/console/jobs/{o.job}/cancel",
        "/console/jobs/<job_id>/retry": f"/console/jobs/{o.job}/retry",
        "/console/failures/<fingerprint>/retry": f"/console/failures/{o.fingerprint}/retry",
        "/console/failures/<fingerprint>/cancel": f"/console/failures/{o.fingerprint}/cancel",
        "/console/schedules/<schedule_id>/pause": f"/console/schedules/{o.schedule}/pause",
        "/console/schedules/<schedule_id>/resume": f"/console/schedules/{o.schedule}/resume",
        "/console/schedules/<schedule_id>/trigger": f"/console/schedules/{o.schedule}/trigger",
        "/console/datasets/<dataset_id>/export": f"/console/datasets/{o.dataset}/export",
        "/console/workflows/<workflow_id>/cancel": f"/console/workflows/{o.workflow}/cancel",
        "/console/workflows/<workflow_id>/retry": f"/console/workflows/{o.workflow}/retry",
    }


QUEUE_ACTIONS = {"/console/queues/<queue>/pause", "/console/queues/<queue>/resume", "/console/queues/<queue>/drain"}
MISSING = Objects(MISSING_JOB, "f" * 16, MISSING_JOB, MISSING_JOB, MISSING_JOB, MISSING_JOB)


def console_rules(app: APIFlask, method: str) -> set[str]:
    return {rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/console")
            and method in (rule.methods or ())}  # fmt: skip


def test_another_tenants_objects_are_404_in_the_console(app: APIFlask, make_key: KeyFactory, run_job: RunJob) -> None:
    """Every console page and action that names an object, against another tenant's: 404 exactly as a missing one,
    and nothing of theirs changes. A new console route fails here until it is added."""
    theirs = client_with(app, make_key(tenant="globex"))
    owner = make_objects(app, theirs, run_job, "globex")
    console = signed_in(app, make_key(tenant="acme"))
    with_ids = {rule for rule in console_rules(app, "GET") if "<" in rule}
    assert with_ids == set(object_pages(owner)), "a new console page of an object: add it here"
    posts = console_rules(app, "POST") - {"/console/sign-in", "/console/sign-out"}
    assert posts == set(object_actions(owner)) | QUEUE_ACTIONS, "a new console action: add it here"
    for theirs_path, missing_path in zip(object_pages(owner).values(), object_pages(MISSING).values(), strict=True):
        response, missing = console.get(theirs_path), console.get(missing_path)
        assert response.status_code == missing.status_code == 404, theirs_path
        shown, expected = response.get_data(as_text=True), missing.get_data(as_text=True)
        for mine, placeholder in zip(vars(owner).values(), vars(MISSING).values(), strict=True):
            shown = shown.replace(mine, placeholder)
        assert shown == expected, theirs_path
    token = csrf(console, "/console")
    for action in object_actions(owner).values():
        assert console.post(action, data={"csrf_token": token, "format": "csv"}).status_code == 404, action
    for page in ("/console", "/console/jobs", "/console/failures", "/console/schedules", "/console/datasets",
                 "/console/queues", "/console/workflows"):  # fmt: skip
        html = console.get(page).get_data(as_text=True)
        assert page and "globex" not in html and owner.job[-8:] not in html and owner.fingerprint not in html, page
    assert theirs.get(f"/v1/jobs/{owner.job}").json["status"] == "failed"
    assert theirs.get(f"/v1/schedules/{owner.schedule}").json["enabled"] is True
    assert theirs.get("/v1/jobs?type=dataset_export").json["items"] == []
    echoes = theirs.get("/v1/jobs?type=echo").json["items"]
    assert [j["workflow_id"] for j in echoes] == [owner.workflow]  # its workflow's one job: never triggered
    flow = theirs.get(f"/v1/workflows/{owner.workflow}").json
    assert (flow["status"], flow["retries"]) == ("failed", 0)


def test_a_schedule_shows_its_fire_ledger_and_is_paused_and_triggered(
    app: APIFlask, make_key: KeyFactory, client: FlaskClient
) -> None:
    made = client.post("/v1/schedules", json={"name": "often", "type": "echo", "interval_seconds": 3600,
                                              "payload": {"message": "hi"}}).json  # fmt: skip
    console = signed_in(app, make_key())
    assert "often" in console.get("/console/schedules").get_data(as_text=True)
    page = console.get(f"/console/schedules/{made['id']}").get_data(as_text=True)
    assert page.count("◷ upcoming") == 3 and "every 3600 s" in page
    token = csrf(console, "/console")
    assert console.post(f"/console/schedules/{made['id']}/pause", data={"csrf_token": token}).status_code == 302
    assert client.get(f"/v1/schedules/{made['id']}").json["enabled"] is False
    assert "◷ upcoming" not in console.get(f"/console/schedules/{made['id']}").get_data(as_text=True)
    triggered = console.post(f"/console/schedules/{made['id']}/trigger", data={"csrf_token": token})
    assert triggered.status_code == 302 and triggered.location.startswith("/console/jobs/")
    job_id = triggered.location.rsplit("/", 1)[1]
    assert client.get(f"/v1/jobs/{job_id}").json["schedule_id"] == made["id"]
    assert "▶ triggered by hand" in console.get(f"/console/schedules/{made['id']}").get_data(as_text=True)
    assert console.post(f"/console/schedules/{made['id']}/resume", data={"csrf_token": token}).status_code == 302
    assert client.get(f"/v1/schedules/{made['id']}").json["enabled"] is True


def test_a_dataset_shows_its_schema_rows_and_rejects_and_exports(
    app: APIFlask, make_key: KeyFactory, client: FlaskClient, run_job: RunJob
) -> None:
    uploaded = client.post(f"/v1/datasets?name=flights&{TYPED}", data=CSV, content_type="text/csv").json
    run_job(uploaded["job"]["id"])
    dataset = uploaded["dataset"]["id"]
    console = signed_in(app, make_key())
    page = console.get(f"/console/datasets/{dataset}").get_data(as_text=True)
    assert "<code>carrier</code>" in page and "<code>delay</code>" in page  # the schema
    reject = re.search(
        r"<tr><td>(\d+)</td><td><code>(\w+)</code></td><td><code>(\w+)</code></td><td>([^<]+)</td>", page
    )
    assert reject and reject.groups()[:3] == ("3", "delay", "x"), page  # line 3, its column and value, and why
    assert page.count("<td>AA</td>") == 2  # the first rows
    token = csrf(console, "/console")
    exported = console.post(f"/console/datasets/{dataset}/export", data={"csrf_token": token, "format": "csv"})
    assert exported.status_code == 302
    job_id = exported.location.rsplit("/", 1)[1]
    run_job(job_id)
    job_page = console.get(f"/console/jobs/{job_id}").get_data(as_text=True)
    link = re.search(r'href="(/console/datasets/files/[0-9a-f-]+)"', job_page)
    assert link, job_page
    download = console.get(link.group(1))
    assert download.status_code == 200 and download.get_data(as_text=True).splitlines()[0] == '"carrier","delay"'
    bad = console.post(f"/console/datasets/{dataset}/export", data={"csrf_token": token, "format": "xls"})
    assert bad.status_code == 422 and "Export as one of csv, jsonl, parquet" in bad.get_data(as_text=True)


def test_a_derived_dataset_shows_its_lineage_graph(
    app: APIFlask, make_key: KeyFactory, client: FlaskClient, run_job: RunJob
) -> None:
    """flights → query → late; late ⋈ carriers → report: the report's page says which job made it from which versions,
    and draws the four datasets with an arrow per read, each upstream box linking to its page."""

    def made(job_type: str, payload: dict[str, Any]) -> str:
        job = client.post("/v1/jobs", json={"type": job_type, "payload": payload}).json
        assert run_job(job["id"]).status == "succeeded"
        return str(client.get(f"/v1/jobs/{job['id']}/result").json["data"]["dataset_id"])

    flights = client.post("/v1/datasets?name=flights", data="carrier,delay\nAA,5\nUA,50\n", content_type="text/csv")
    carriers = client.post("/v1/datasets?name=carriers", data="carrier,label\nUA,United\n", content_type="text/csv")
    for uploaded in (flights, carriers):
        run_job(uploaded.json["job"]["id"])
    late = made("dataset_query", {"dataset_id": flights.json["dataset"]["id"], "where": "delay > 10", "name": "late"})
    right = {"dataset_id": carriers.json["dataset"]["id"]}
    report = made("dataset_join", {"left": {"dataset_id": late}, "right": right, "on": ["carrier"], "name": "report"})
    console = signed_in(app, make_key())
    page = console.get(f"/console/datasets/{report}").get_data(as_text=True)
    assert re.search(r"made by <a href=\"/console/jobs/[0-9a-f-]+\">join job", page), page
    assert f'href="/console/datasets/{late}">late</a> v1' in page
    graph = page[page.index("<svg") : page.index("</svg>")]
    assert re.findall(r"<text x=\"10\" y=\"19\">([^<]+)</text>", graph) == ["report", "late", "carriers", "flights"]
    assert graph.count('class="edge"') == 3  # late → report, carriers → report, flights → late
    linked = re.findall(r'<a href="/console/datasets/([0-9a-f-]+)">', graph)
    assert linked == [late, carriers.json["dataset"]["id"], flights.json["dataset"]["id"]]  # not the page's own
    ingested = console.get(f"/console/datasets/{late}").get_data(as_text=True)
    assert "query job" in ingested and 'class="edge"' in ingested
    alone = console.get(f"/console/datasets/{flights.json['dataset']['id']}").get_data(as_text=True)
    assert '<svg class="lineage-graph"' not in alone and "ingest job" in alone  # one node: no graph to draw


def test_queues_are_paused_resumed_and_drained_from_the_console(
    app: APIFlask, make_key: KeyFactory, client: FlaskClient
) -> None:
    later = client.post("/v1/jobs", json={"type": "echo", "payload": {"message": "x"}, "delay_seconds": 600}).json
    console = signed_in(app, make_key())
    token = csrf(console, "/console")
    paused = console.post("/console/queues/default/pause", data={"csrf_token": token, "reason": "provider down"})
    assert paused.status_code == 302
    [default] = [q for q in client.get("/v1/queues").json["items"] if q["name"] == "default"]
    assert default["paused"]["reason"] == "provider down"
    assert "⏸ paused: provider down" in console.get("/console/queues").get_data(as_text=True)
    assert console.post("/console/queues/default/resume", data={"csrf_token": token}).status_code == 302
    drained = console.post("/console/queues/default/drain", data={"csrf_token": token, "reason": "cleanup"})
    assert drained.status_code == 302 and "1 pending jobs cancelled" in console.get("/console").get_data(as_text=True)
    job = client.get(f"/v1/jobs/{later['id']}").json
    assert job["status"] == "cancelled" and job["error"] == {"type": "Drained", "message": "cleanup"}
    assert console.post("/console/queues/nope/drain", data={"csrf_token": token}).status_code == 404
    too_long = console.post("/console/queues/default/pause", data={"csrf_token": token, "reason": "x" * 501})
    assert too_long.status_code == 422
    reader = signed_in(app, make_key(scopes=["jobs:read"]))
    assert "Drain default" not in reader.get("/console/queues").get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/console/jobs?status=bogus", 422),
        ("/console/jobs?limit=0", 422),
        ("/console/jobs?cursor=nope", 400),
        ("/console/jobs?created_after=yesterday", 422),
        ("/console/jobs?colour=red", 422),
        ("/console/jobs/not-a-uuid", 404),
        (f"/console/jobs/{MISSING_JOB}", 404),
        ("/console/failures/NOTHEX", 404),
        ("/console/failures?cursor=nope", 400),
        ("/console/nowhere", 404),
    ],
)
def test_bad_input_is_an_html_error_page(app: APIFlask, make_key: KeyFactory, path: str, status: int) -> None:
    response = signed_in(app, make_key()).get(path)
    assert response.status_code == status, response.get_data(as_text=True)
    if path != "/console/nowhere":  # an unknown path never reached a console view: the app's 404
        assert response.mimetype == "text/html" and "Back to the overview" in response.get_data(as_text=True)


def test_filters_select_and_dates_in_utc(app: APIFlask, make_key: KeyFactory, client: FlaskClient) -> None:
    made = client.post("/v1/jobs", json={"type": "echo", "payload": {"message": "x"}}).json
    console = signed_in(app, make_key())
    at = made["created_at"][:16]  # as a datetime-local field sends it: no seconds, no zone
    listed: dict[str, Any] = {}
    for query in (f"created_after={at}", "type=echo&status=queued", "queue=default"):
        listed[query] = made["id"][-8:] in console.get(f"/console/jobs?{query}").get_data(as_text=True)
    listed["type=sleep"] = made["id"][-8:] in console.get("/console/jobs?type=sleep").get_data(as_text=True)
    assert listed == {f"created_after={at}": True, "type=echo&status=queued": True, "queue=default": True,
                      "type=sleep": False}  # fmt: skip


def test_a_newcomer_sees_how_to_submit_a_first_job(app: APIFlask, make_key: KeyFactory) -> None:
    console = signed_in(app, make_key())
    for page in ("/console", "/console/jobs"):
        html = console.get(page).get_data(as_text=True)
        assert "No jobs yet" in html and "/v1/jobs" in html, page


def test_finished_jobs_alone_are_not_an_empty_console(
    app: APIFlask, make_key: KeyFactory, client: FlaskClient, run_job: RunJob
) -> None:
    """The overview counts the unfinished jobs only; a tenant whose jobs have all finished still has jobs."""
    job = client.post("/v1/jobs", json={"type": "echo", "payload": {"message": "x"}}).json
    assert run_job(job["id"]).status == "succeeded"
    html = signed_in(app, make_key()).get("/console").get_data(as_text=True)
    assert "No jobs yet" not in html
    assert "/console/jobs?queue=default&amp;status=succeeded" in html


def test_pages_load_nothing_from_elsewhere(app: APIFlask, make_key: KeyFactory) -> None:
    console = signed_in(app, make_key())
    response = console.get("/console")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert assets and all(a.startswith("/") for a in assets), assets
    for asset in (a for a in assets if a.startswith("/static/")):
        assert console.get(asset).status_code == 200, asset


def test_a_workflow_shows_its_steps_and_is_retried(
    app: APIFlask, make_key: KeyFactory, client: FlaskClient, run_job: RunJob
) -> None:
    mine = make_objects(app, client, run_job, "acme")
    console = signed_in(app, make_key())
    assert "acme-flow" in console.get("/console/workflows").get_data(as_text=True)
    page = console.get(f"/console/workflows/{mine.workflow}").get_data(as_text=True)
    assert "ReferenceMissing" in page and "Retry workflow" in page and "1 of 2 steps finished" not in page
    assert "sse-connect" not in page  # finished: nothing to follow
    token = csrf(console, "/console")
    assert console.post(f"/console/workflows/{mine.workflow}/cancel", data={"csrf_token": token}).status_code == 409
    retried = console.post(f"/console/workflows/{mine.workflow}/retry", data={"csrf_token": token})
    assert retried.status_code == 302 and client.get(f"/v1/workflows/{mine.workflow}").json["retries"] == 1
    # its step names the same absent field again: failed again at once, and the page says it was retried
    assert "retried 1 time" in console.get(f"/console/workflows/{mine.workflow}").get_data(as_text=True)
