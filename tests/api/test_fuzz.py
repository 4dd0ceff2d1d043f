"""Schemathesis generates requests from /openapi.json (valid and invalid ones), sent with an admin key: none may
produce a 5xx, and every error must be problem+json. (Without a key every /v1 operation is a 401: test_auth.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from apiflask import APIFlask
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from api import create_app
from core.migrate import upgrade_database
from core.queue import RecordingPublisher
from core.settings import Settings
from tests.support.keys import app_key


def fuzz_app(directory: Path, url: str | None = None) -> APIFlask:
    if url is None:
        url = f"sqlite:///{directory / 'fuzz.db'}"
        upgrade_database(url)
    return create_app(Settings(data_dir=directory, database_url=url), publisher=RecordingPublisher())


def operation_labels() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app(Path(directory)))
        return [result.ok().label for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("label", operation_labels())
def test_no_input_produces_a_server_error(
    label: str, mode: GenerationMode, tmp_path: Path, database_url: str, clean_db: object
) -> None:
    app = fuzz_app(tmp_path, database_url)
    token = app_key(app, scopes=("admin", "metrics"))  # metrics: GET /metrics, which admin keys do not open
    auth = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operation = next(r.ok() for r in schema.get_all_operations() if r.ok().label == label)

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Any) -> None:
        response = case.call_and_validate(headers=auth, checks=[not_a_server_error])
        if mode is GenerationMode.POSITIVE:  # negative cases may drop or mangle the Authorization header itself
            assert response.status_code not in (401, 403), response.text  # the key opens every operation
        if response.status_code >= 400:
            headers = {name.lower(): value for name, value in response.headers.items()}
            content_type = headers["content-type"]
            content_type = content_type[0] if isinstance(content_type, list) else content_type
            assert content_type.startswith("application/problem+json"), (response.status_code, content_type)

    try:
        check()
    except Unsatisfiable:
        # e.g. no parameters, or only free-form string path parameters: nothing is invalid by the schema.
        assert mode is GenerationMode.NEGATIVE
        pytest.skip(f"the schema admits no invalid input for {label}")
