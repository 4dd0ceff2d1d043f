"""/v1/keys: an admin creates, lists, reads and revokes its own tenant's keys; the token is shown once; audited."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import select

from core.keys import hash_token
from core.models import ApiKey, AuditEvent
from tests.api.conftest import KeyFactory
from tests.support.keys import client_with

TOKEN = re.compile(r"cvk_[0-9a-f]{16}_[0-9A-Za-z]{43}")


def test_create_shows_the_token_once_and_stores_only_its_hash(client: FlaskClient, app: APIFlask) -> None:
    made = client.post("/v1/keys", json={"scopes": ["jobs:read", "jobs:write"], "name": "ci", "expires_in_days": 30})
    assert made.status_code == 201
    key = made.json
    assert TOKEN.fullmatch(key["token"]) and key["token"][4:20] == key["id"]
    assert made.headers["Location"] == f"/v1/keys/{key['id']}"
    assert key["scopes"] == ["jobs:read", "jobs:write"] and key["tenant_id"] == "default" and key["name"] == "ci"
    expires = datetime.fromisoformat(key["expires_at"]) - datetime.fromisoformat(key["created_at"])
    assert expires == timedelta(days=30)
    listed = client.get("/v1/keys").get_data(as_text=True)
    read = client.get(f"/v1/keys/{key['id']}").get_data(as_text=True)
    assert key["id"] in listed and key["token"] not in listed + read and "token" not in listed + read
    ext = app.extensions["conveyor"]
    with ext.sessions() as session:
        row = session.get_one(ApiKey, key["id"])
        assert row.secret_hash == hash_token(ext.authenticator.server_secret, key["token"])
        assert key["token"] not in str([getattr(row, c.key) for c in ApiKey.__table__.columns])
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.object_id == key["id"])).all()
    assert actions == ["key.created"]
    new = client_with(app, key["token"])
    assert new.post("/v1/jobs", json={"type": "echo", "payload": {"message": "x"}}).status_code == 202
    assert new.get("/v1/keys").status_code == 403  # not an admin


def test_revoke_stops_the_key_and_is_audited(client: FlaskClient, app: APIFlask) -> None:
    key = client.post("/v1/keys", json={"scopes": ["jobs:read"]}).json
    revoked = client.post(f"/v1/keys/{key['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json["revoked_at"] is not None
    again = client.post(f"/v1/keys/{key['id']}/revoke")
    assert again.json["revoked_at"] == revoked.json["revoked_at"]  # idempotent
    assert client_with(app, key["token"]).get("/v1/jobs").status_code == 401
    with app.extensions["conveyor"].sessions() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.object_id == key["id"]).order_by(AuditEvent.id)
        ).all()
    assert actions == ["key.created", "key.revoked"]


def test_an_admin_manages_only_its_own_tenants_keys(app: APIFlask, make_key: KeyFactory) -> None:
    acme, globex = client_with(app, make_key("acme")), client_with(app, make_key("globex"))
    theirs = globex.post("/v1/keys", json={"scopes": ["jobs:read"]}).json
    made = acme.post("/v1/keys", json={"scopes": ["admin"]}).json
    assert made["tenant_id"] == "acme"
    assert {k["tenant_id"] for k in acme.get("/v1/keys").json["items"]} == {"acme"}
    assert acme.get(f"/v1/keys/{theirs['id']}").status_code == 404
    assert acme.post(f"/v1/keys/{theirs['id']}/revoke").status_code == 404
    assert client_with(app, theirs["token"]).get("/v1/jobs").status_code == 200


def test_bad_key_requests_are_422(client: FlaskClient) -> None:
    for body in ({}, {"scopes": []}, {"scopes": ["jobs:delete"]}, {"scopes": ["admin"], "expires_in_days": 0},
                 {"scopes": ["admin"], "tenant_id": "other"}, {"scopes": ["admin"], "name": ""}):  # fmt: skip
        response = client.post("/v1/keys", json=body)
        assert response.status_code == 422 and response.mimetype == "application/problem+json", body
    assert client.get("/v1/keys/nope").status_code == 404


def test_schedule_and_dataset_changes_are_audited_with_the_acting_key(app: APIFlask, make_key: KeyFactory) -> None:
    token = make_key("acme")
    client = client_with(app, token)
    schedule = client.post("/v1/schedules", json={"name": "n", "type": "echo", "interval_seconds": 60,
                                                  "payload": {"message": "x"}}).json["id"]  # fmt: skip
    client.post(f"/v1/schedules/{schedule}/pause")
    client.delete(f"/v1/schedules/{schedule}")
    dataset = client.post("/v1/datasets?name=d", data="a\n1\n", content_type="text/csv").json["dataset"]["id"]
    client.delete(f"/v1/datasets/{dataset}")
    with app.extensions["conveyor"].sessions() as session:
        rows = session.execute(
            select(AuditEvent.action, AuditEvent.object_id, AuditEvent.actor, AuditEvent.tenant_id)
            .where(AuditEvent.object_type.in_(["schedule", "dataset"])).order_by(AuditEvent.id)
        ).all()  # fmt: skip
    assert [(r.action, r.object_id) for r in rows] == [
        ("schedule.created", schedule), ("schedule.paused", schedule), ("schedule.deleted", schedule),
        ("dataset.replace", dataset), ("dataset.deleted", dataset),
    ]  # fmt: skip
    assert {(r.actor, r.tenant_id) for r in rows} == {(token[4:20], "acme")}
