"""Authentication and scopes on every /v1 operation: 401 for a key that does not authenticate, 403 for a key
without the operation's scope, the scopes declared in /openapi.json, CONVEYOR_AUTH=off, and the response headers."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from pydantic import ValidationError
from sqlalchemy import Engine, event, select

from api import create_app
from core.keys import Scope
from core.models import ApiKey
from core.queue import RecordingPublisher
from core.settings import Settings
from tests.api.conftest import KeyFactory
from tests.support.keys import client_with

ID_VALUE = "00000000-0000-4000-8000-000000000000"
OPEN = {"/healthz", "/readyz"}


def v1_operations(app: APIFlask) -> list[tuple[str, str, str]]:
    """(method, path with ids filled in, endpoint) of every /v1 operation."""
    operations = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", ID_VALUE, rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operations.append((method, path, rule.endpoint))
    return operations


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body: dict[str, Any] = response.json
    assert body["status"] == status and body["detail"]
    return body


def test_every_v1_operation_answers_401_without_a_key(app: APIFlask, anonymous: FlaskClient) -> None:
    operations = v1_operations(app)
    assert len(operations) > 30
    for method, path, _endpoint in operations:
        body = assert_problem(anonymous.open(path, method=method, json={}), 401)
        assert body["type"] == "urn:conveyor:problem:unauthorized"


def test_health_stays_open(anonymous: FlaskClient) -> None:
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    ("header", "says"),
    [
        (None, "Send an API key"),
        ("Basic dXNlcjpwYXNz", "must be `Bearer <API key>`"),
        ("Bearer ", "must be `Bearer <API key>`"),
        ("Bearer ghp_0123456789abcdef0123456789abcdef0123", "malformed"),
        ("Bearer cvk_0123456789abcdef_short", "malformed"),
        ("Bearer cvk_0123456789ABCDEF_" + "a" * 43, "malformed"),
        ("Bearer cvk_0123456789abcdef_" + "a" * 43, "not known"),
    ],
)
def test_a_key_that_does_not_authenticate_is_401(app: APIFlask, header: str | None, says: str) -> None:
    client = app.test_client()
    response = client.get("/v1/jobs", headers={"Authorization": header} if header else {})
    body = assert_problem(response, 401)
    assert says in body["detail"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_known_secret_with_the_wrong_id_or_a_changed_secret_is_401(app: APIFlask, make_key: KeyFactory) -> None:
    token = make_key()
    other = make_key()
    swapped = token[:21] + other[21:]  # the first key's id, the second key's secret
    assert_problem(client_with(app, swapped).get("/v1/jobs"), 401)
    changed = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert_problem(client_with(app, changed).get("/v1/jobs"), 401)
    assert client_with(app, token).get("/v1/jobs").status_code == 200


def test_revoked_and_expired_keys_are_401(app: APIFlask, make_key: KeyFactory, client: FlaskClient) -> None:
    token = make_key(scopes=["jobs:read"])
    assert client_with(app, token).get("/v1/jobs").status_code == 200
    key_id = token[4:20]
    assert client.post(f"/v1/keys/{key_id}/revoke").status_code == 200
    body = assert_problem(client_with(app, token).get("/v1/jobs"), 401)  # at once in the process that revoked it
    assert "revoked" in body["detail"]
    expired = make_key(scopes=["jobs:read"], expires_in=timedelta(microseconds=1))
    body = assert_problem(client_with(app, expired).get("/v1/jobs"), 401)
    assert "expired" in body["detail"]


def test_each_operation_needs_its_scope(app: APIFlask, make_key: KeyFactory) -> None:
    """A key with every scope but the operation's (and not admin) is refused with 403 naming the scope."""
    for method, path, endpoint in v1_operations(app):
        scope: Scope | None = app.view_functions[endpoint].required_scope
        if scope is None:
            continue  # any key: test_an_operation_for_any_key_opens_to_each_scope
        others = [s.value for s in Scope if s not in (scope, Scope.ADMIN)]
        response = client_with(app, make_key(scopes=others)).open(path, method=method, json={})
        body = assert_problem(response, 403)
        assert f"`{scope.value}`" in body["detail"], (method, path)


def test_each_scope_opens_its_operations(app: APIFlask, make_key: KeyFactory) -> None:
    """The same key with only the operation's scope gets past authorisation (whatever the view then says)."""
    for method, path, endpoint in v1_operations(app):
        scope: Scope | None = app.view_functions[endpoint].required_scope
        if scope is None:
            continue
        response = client_with(app, make_key(scopes=[scope.value])).open(path, method=method, json={})
        assert response.status_code not in (401, 403), (method, path, response.get_data(as_text=True))


def test_an_operation_for_any_key_opens_to_each_scope(app: APIFlask, make_key: KeyFactory) -> None:
    """GET /v1/usage (what a tenant may always know of itself) answers a key of any one scope, and no key at all
    is still 401."""
    anyone = [(m, p) for m, p, e in v1_operations(app) if app.view_functions[e].required_scope is None]
    assert anyone == [("GET", "/v1/usage")]
    for scope in Scope:
        assert client_with(app, make_key(scopes=[scope.value])).get("/v1/usage").status_code == 200, scope
    assert_problem(app.test_client().get("/v1/usage"), 401)


def test_openapi_declares_the_scheme_and_each_operations_scope(app: APIFlask, client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "cvk_<id>_<secret>",
        "description": spec["components"]["securitySchemes"]["ApiKey"]["description"],
    }  # fmt: skip
    for method, _path, endpoint in v1_operations(app):
        rule = next(r.rule for r in app.url_map.iter_rules() if r.endpoint == endpoint)
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule)
        operation = spec["paths"][path][method.lower()]
        scope = app.view_functions[endpoint].required_scope
        assert operation["security"] == [{"ApiKey": [] if scope is None else [scope.value]}], path
    for path in OPEN:
        assert "security" not in spec["paths"][path]["get"]


def test_last_use_is_stamped_once_a_minute_not_per_request(app: APIFlask, make_key: KeyFactory) -> None:
    token = make_key(scopes=["jobs:read"])
    ext = app.extensions["conveyor"]
    writes: list[str] = []
    event.listen(ext.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_a: writes.append(statement) if statement.startswith("UPDATE api_keys")
                 else None)  # fmt: skip
    client = client_with(app, token)
    for _ in range(20):
        assert client.get("/v1/jobs").status_code == 200
    assert len(writes) == 1
    with ext.sessions() as session:
        stamped = session.scalars(select(ApiKey.last_used_at).where(ApiKey.id == token[4:20])).one()
    assert stamped is not None


def test_security_headers(client: FlaskClient, anonymous: FlaskClient) -> None:
    for response in (client.get("/v1/jobs"), anonymous.get("/v1/jobs"), client.get("/healthz")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert client.get("/v1/jobs").headers["Cache-Control"] == "no-store"
    assert anonymous.get("/v1/jobs").headers["Cache-Control"] == "no-store"


def test_cors_is_closed_by_default(client: FlaskClient) -> None:
    response = client.get("/v1/jobs", headers={"Origin": "https://app.example.com"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_allows_only_the_listed_origins(
    clean_db: Engine, database_url: str, tmp_path: Path, make_key: KeyFactory
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url, cors_origins="https://app.example.com")
    app = create_app(settings, publisher=RecordingPublisher())
    client = client_with(app, make_key())
    allowed = client.get("/v1/jobs", headers={"Origin": "https://app.example.com"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "Location" in allowed.headers["Access-Control-Expose-Headers"]
    other = client.get("/v1/jobs", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in other.headers
    preflight = app.test_client().options("/v1/jobs", headers={
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})  # fmt: skip
    assert preflight.status_code == 200  # no key on a preflight: browsers never send one
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    app.extensions["conveyor"].engine.dispose()


def test_auth_off_acts_as_the_default_admin_on_loopback_only(
    clean_db: Engine, database_url: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=database_url, auth="off")
    app = create_app(settings, publisher=RecordingPublisher())
    local = app.test_client()
    made = local.post("/v1/jobs", json={"type": "echo", "payload": {"message": "x"}})
    assert made.status_code == 202
    assert local.get("/readyz").json["checks"]["auth"].startswith("off")
    remote = app.test_client()
    remote.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    body = assert_problem(remote.get(f"/v1/jobs/{made.json['id']}"), 403)
    assert "loopback" in body["detail"]
    app.extensions["conveyor"].engine.dispose()
    with pytest.raises(ValidationError, match="loopback"):
        Settings(auth="off", api_host="0.0.0.0")  # noqa: S104 - the address being refused


def test_secrets_never_reach_the_logs(
    app: APIFlask, client: FlaskClient, make_key: KeyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    made = client.post("/v1/keys", json={"scopes": ["jobs:read"]}).json["token"]
    client_with(app, made).get("/v1/jobs")
    client_with(app, made[:-1] + "x").get("/v1/jobs")  # a failed attempt
    secret = app.extensions["conveyor"].authenticator.server_secret.hex()
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert made not in logged and made[21:] not in logged and secret not in logged


def test_a_read_token_reads_one_job_only(app: APIFlask, client: FlaskClient, anonymous: FlaskClient) -> None:
    """What a browser's EventSource uses: `?access_token=` on the job's GET and stream, nothing else."""
    job = client.post("/v1/jobs", json={"type": "echo", "payload": {"message": "x"}}).json
    other = client.post("/v1/jobs", json={"type": "echo", "payload": {"message": "y"}}).json
    made = client.post(f"/v1/jobs/{job['id']}/read-token")
    assert made.status_code == 201
    token = made.json["token"]
    assert token.startswith("cvr_") and made.json["stream_url"] == f"/v1/jobs/{job['id']}/stream?access_token={token}"
    read = anonymous.get(f"/v1/jobs/{job['id']}?access_token={token}")
    assert read.status_code == 200 and read.json["id"] == job["id"]
    with anonymous.get(made.json["stream_url"], buffered=False) as stream:
        assert stream.status_code == 200 and stream.mimetype == "text/event-stream"
        assert job["id"] in next(stream.response).decode()
    assert "reads job" in assert_problem(anonymous.get(f"/v1/jobs/{other['id']}?access_token={token}"), 401)["detail"]
    for path in (f"/v1/jobs/{job['id']}/events", f"/v1/jobs/{job['id']}/result", "/v1/jobs"):
        assert_problem(anonymous.get(f"{path}?access_token={token}"), 401)
    assert_problem(anonymous.post(f"/v1/jobs/{job['id']}/cancel?access_token={token}"), 401)
    assert_problem(anonymous.get(f"/v1/jobs/{job['id']}?access_token={token[:-2]}xx"), 401)
    assert_problem(anonymous.get(f"/v1/jobs/{job['id']}?access_token=cvk_{token[4:]}"), 401)


def test_a_submit_may_ask_for_the_jobs_read_token(client: FlaskClient, anonymous: FlaskClient) -> None:
    plain = client.post("/v1/jobs", json={"type": "echo", "payload": {"message": "x"}})
    assert plain.status_code == 202 and "read_token" not in plain.json
    submitted = client.post("/v1/jobs?read_token=true", json={"type": "echo", "payload": {"message": "x"}})
    assert submitted.status_code == 202
    job, grant = submitted.json, submitted.json["read_token"]
    assert grant["job_id"] == job["id"] and grant["stream_url"].endswith(f"/{job['id']}/stream?access_token=" +
                                                                         grant["token"])  # fmt: skip
    read = anonymous.get(f"/v1/jobs/{job['id']}?access_token={grant['token']}")
    assert read.status_code == 200 and read.json["id"] == job["id"]
    assert_problem(anonymous.get(f"/v1/jobs/{plain.json['id']}?access_token={grant['token']}"), 401)


def test_a_read_token_expires_and_is_tied_to_the_server_secret() -> None:
    import uuid

    from core.keys import KeyInvalid
    from core.read_tokens import ReadGrant, issue_read_token, verify_read_token

    grant = ReadGrant("acme", uuid.uuid4(), "0123456789abcdef")
    token = issue_read_token(b"a" * 32, grant)
    assert verify_read_token(b"a" * 32, token, max_age=60) == grant
    with pytest.raises(KeyInvalid, match="expired"):
        verify_read_token(b"a" * 32, token, max_age=-1)  # older than the lifetime allows
    with pytest.raises(KeyInvalid, match="not valid"):
        verify_read_token(b"b" * 32, token, max_age=60)
