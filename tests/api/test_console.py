"""The console's pages and actions on each backend, under the Flask test client: sign-in and its cookie, the session
ending with its key, scopes deciding buttons and actions, CSRF on every POST, another tenant's objects as 404, bad
input as an HTML error page (never a 500). The browser tests (tests/e2e/test_console_browser.py) drive the same
pages in Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
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
    failed = client.post("/v1/jobs", json={"type": "fail", "payload": {"times": 5}, "max_attempts": 1}).json["id"]
    run_job(failed)
    fingerprint = client.get(f"/v1/jobs/{failed}").json["error_fingerprint"]
    console = signed_in(app, make_key())
    posts = {rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/console")
             and "POST" in (rule.methods or ())} - {"/console/sign-in"}  # fmt: skip
    paths = {
        "/console/sign-out": "/console/sign-out",
        "/console/jobs/<job_id>/cancel": f"/console/jobs/{failed}/cancel",
        "/console/jobs/<job_id>/retry": f"/console/jobs/{failed}/retry",
        "/console/failures/<fingerprint>/retry": f"/console/failures/{fingerprint}/retry",
        "/console/failures/<fingerprint>/cancel": f"/console/failures/{fingerprint}/cancel",
    }
    assert posts == set(paths), "a new console form: add it here"
    for path in paths.values():
        for data in ({}, {"csrf_token": "forged"}):
            response = console.post(path, data=data)
            assert response.status_code == 403 and "security token" in response.get_data(as_text=True), path
    assert client.get(f"/v1/jobs/{failed}").json["status"] == "failed"  # nothing was retried
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


def console_paths(job: str, fingerprint: str) -> dict[str, str]:
    return {
        "/console/jobs/<job_id>": f"/console/jobs/{job}",
        "/console/jobs/<job_id>/live": f"/console/jobs/{job}/live",
        "/console/failures/<fingerprint>": f"/console/failures/{fingerprint}",
    }


def test_another_tenants_objects_are_404_in_the_console(app: APIFlask, make_key: KeyFactory, run_job: RunJob) -> None:
    theirs = client_with(app, make_key(tenant="globex"))
    job = theirs.post("/v1/jobs", json={"type": "fail", "payload": {"times": 5, "message": "globex broke"},
                                        "max_attempts": 1}).json["id"]  # fmt: skip
    run_job(job)
    fingerprint = theirs.get(f"/v1/jobs/{job}").json["error_fingerprint"]
    console = signed_in(app, make_key(tenant="acme"))
    gets = {rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/console") and "<" in rule.rule
            and "GET" in (rule.methods or ())}  # fmt: skip
    assert gets == set(console_paths(job, fingerprint)), "a new console page of an object: add it here"
    for theirs_path, missing_path in zip(console_paths(job, fingerprint).values(),
                                         console_paths(MISSING_JOB, "f" * 16).values(), strict=True):  # fmt: skip
        response, missing = console.get(theirs_path), console.get(missing_path)
        assert response.status_code == missing.status_code == 404, theirs_path
        assert response.get_data(as_text=True).replace(job, MISSING_JOB).replace(fingerprint, "f" * 16) == (
            missing.get_data(as_text=True)
        )
    token = csrf(console, "/console")
    for action in (f"/console/jobs/{job}/retry", f"/console/jobs/{job}/cancel",
                   f"/console/failures/{fingerprint}/retry", f"/console/failures/{fingerprint}/cancel"):  # fmt: skip
        assert console.post(action, data={"csrf_token": token}).status_code == 404, action
    for page in ("/console/jobs", "/console/failures", "/console"):
        html = console.get(page).get_data(as_text=True)
        assert job not in html and job[:8] not in html and fingerprint not in html and "globex" not in html, page
    assert theirs.get(f"/v1/jobs/{job}").json["status"] == "failed"


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
        listed[query] = made["id"][:8] in console.get(f"/console/jobs?{query}").get_data(as_text=True)
    listed["type=sleep"] = made["id"][:8] in console.get("/console/jobs?type=sleep").get_data(as_text=True)
    assert listed == {f"created_after={at}": True, "type=echo&status=queued": True, "queue=default": True,
                      "type=sleep": False}  # fmt: skip


def test_a_newcomer_sees_how_to_submit_a_first_job(app: APIFlask, make_key: KeyFactory) -> None:
    console = signed_in(app, make_key())
    for page in ("/console", "/console/jobs"):
        html = console.get(page).get_data(as_text=True)
        assert "No jobs yet" in html and "/v1/jobs" in html, page


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
