"""The OpenAPI 3.1 document describes every route and is a valid document."""

from __future__ import annotations

import json
import re

from apiflask import APIFlask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

UNDOCUMENTED = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/static/<path:filename>"}


def test_every_route_is_documented(app: APIFlask, client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if rule.rule in UNDOCUMENTED or rule.rule.startswith(("/static", "/console")):
            continue  # files, and the console's HTML pages (tests/api/test_console.py): not the API
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, f"{method} {path} missing from /openapi.json"


def test_document_is_valid_openapi_31(client: FlaskClient) -> None:
    validate(client.get("/openapi.json").json)


def test_job_create_schema_comes_from_the_pydantic_model(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    ref = body["$ref"].split("/")[-1]
    schema = spec["components"]["schemas"][ref]
    assert {
        "type",
        "payload",
        "priority",
        "queue",
        "run_at",
        "delay_seconds",
        "max_attempts",
        "unique_key",
        "callback_url",
    } == set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_docs_page(client: FlaskClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200 and b"openapi.json" in response.data


def test_docs_page_loads_nothing_from_another_host(client: FlaskClient) -> None:
    """Every script, stylesheet and icon of /docs is served by the API (offline machines rendered a blank page when
    they came from a CDN), and each answers 200 with its type."""
    page = client.get("/docs").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(assets) == 4 and all(asset.startswith("/static/vendor/swagger-ui/") for asset in assets), assets
    assert re.findall(r'\burl: "([^"]+)"', page) == ["/openapi.json"]
    types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200 and response.mimetype == types[asset[asset.rindex(".") :]], asset
        assert len(response.get_data()) > 500


def test_one_component_per_model_and_readable_operation_ids(client: FlaskClient) -> None:
    """No nested copy (`JobPage.JobRead`) beside its model, errors as problem+json, and an operationId per operation
    that reads as a method name (api/openapi.py's table), none twice."""
    spec = client.get("/openapi.json").json
    names = set(spec["components"]["schemas"])
    assert [name for name in names if "." in name] == []
    assert {"JobRead", "Problem", "FailureGroupRead"} <= names and not {"HTTPError", "ValidationError"} & names
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)*", i) for i in ids), ids
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(spec)))
    assert refs <= names, refs - names
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            for status, response in op["responses"].items():
                if status[0] in "45":
                    assert list(response["content"]) == ["application/problem+json"], (method, path, status)
            if path.startswith("/v1/"):
                assert {"401", "429", "503"} <= set(op["responses"]), (method, path)
