"""The datasets API: every way to upload, every refusal as a problem body (and no file left behind), reading rows
with filters and sorts, rejects, delete."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select

from core.models import Dataset, StoredFile
from tests.support.keys import admin_client

PROBLEM = "application/problem+json"
Upload = Callable[..., dict[str, Any]]
FLIGHTS = "carrier,origin,delay\nAA,JFK,5\nUA,JFK,-2\nAA,LGA,30\nDL,JFK,\nB6,BOS,12\n"


def files_on_disk(data_dir: Path) -> list[Path]:
    directory = data_dir / "files"
    return sorted(directory.iterdir()) if directory.exists() else []


def count(engine: Engine, model: type[Dataset] | type[StoredFile]) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(model)).scalar_one())


def test_multipart_upload_with_all_fields(client: FlaskClient, run_job: Any, clean_db: Engine) -> None:
    form = {
        "file": (io.BytesIO(b"a|b\n1|x\n"), "export.psv"),
        "name": "pipes",
        "format": "csv",
        "options": json.dumps({"delimiter": "|"}),
        "schema": json.dumps([{"name": "a", "type": "integer"}, {"name": "b", "type": "string", "nullable": False}]),
    }
    response = client.post("/v1/datasets", data=form, content_type="multipart/form-data")
    assert response.status_code == 202 and response.headers["Location"].startswith("/v1/datasets/")
    body = response.json
    assert body["dataset"]["name"] == "pipes" and body["dataset"]["status"] == "pending"
    assert body["job"]["type"] == "dataset_ingest" and body["job"]["payload"]["options"]["delimiter"] == "|"
    assert run_job(body["job"]["id"]).status == "succeeded"
    dataset = client.get(response.headers["Location"]).json
    assert dataset["status"] == "ready" and dataset["row_count"] == 1
    assert dataset["source"]["filename"] == "export.psv" and len(dataset["source"]["sha256"]) == 64


@pytest.mark.parametrize(
    ("body", "content_type", "query", "status", "problem"),
    [
        (b"", "text/csv", "", 422, "file-unreadable"),  # empty
        (b"a,b\n", "text/csv", "", 422, "file-unreadable"),  # header only
        (b"a,b\n1,2\n", "text/plain", "", 415, "unsupported-media-type"),
        (b"a,b\n1,2\n", "application/json", "", 415, "unsupported-media-type"),
        (b"a,b\n1,2\n", "text/csv", "schema=nope", 422, "validation-error"),  # not JSON
        (b"a,b\n1,2\n", "text/csv", 'schema={"a":"money"}', 422, "schema-invalid"),
        (b"a,b\n1,2\n", "text/csv", 'schema={"a":"integer","z":"integer"}', 422, "validation-error"),  # not in file
        (b"a,b\n1,2\n", "text/csv", 'schema=[{"name":"a"},{"name":"a"}]', 422, "schema-invalid"),  # duplicate
        (b"a,b\n1,2\n", "text/csv", 'schema=[{"name":" "}]', 422, "schema-invalid"),  # blank
        (b"a,b\n1,2\n", "text/csv", 'schema={"a":5}', 422, "schema-invalid"),
        (b"a,b\n1,2\n", "text/csv", "schema=[5]", 422, "schema-invalid"),
        (b"a,b\n1,2\n", "text/csv", "schema=7", 422, "schema-invalid"),
        (b"a,b\n1,2\n", "text/csv", 'options={"delimiter":";;"}', 422, "validation-error"),
        (b"a,b\n1,2\n", "text/csv", 'options={"encoding":"klingon"}', 422, "file-unreadable"),
        (b"a,b\n1,2\n", "text/csv", "format=xls", 422, "validation-error"),
        (b"not parquet", "application/vnd.apache.parquet", "", 422, "file-unreadable"),
        (b"\xff\xfe,b\n\xff,2\n", "text/csv", "", 422, "file-unreadable"),  # not UTF-8
        (b"a,,b\n1,2,3\n", "text/csv", "", 422, "schema-invalid"),  # a column without a name
        (b"a,a\n1,2\n", "text/csv", "", 422, "schema-invalid"),  # the same name twice
        (b'{"": 1}\n', "application/x-ndjson", "", 422, "schema-invalid"),
        (b"\n\n", "application/x-ndjson", "", 422, "file-unreadable"),
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing(
    client: FlaskClient, settings: Any, clean_db: Engine, body: bytes, content_type: str, query: str, status: int,
    problem: str,
) -> None:  # fmt: skip
    response = client.post(f"/v1/datasets?{query}", data=body, content_type=content_type)
    assert response.status_code == status and response.mimetype == PROBLEM, response.json
    assert response.json["type"] == f"urn:conveyor:problem:{problem}"
    assert response.json["detail"]
    assert files_on_disk(settings.data_dir) == [] and count(clean_db, Dataset) == 0


def test_not_utf8_says_which_encoding_option_to_set(client: FlaskClient) -> None:
    response = client.post("/v1/datasets", data="a\nJosé\n".encode("latin-1"), content_type="text/csv")
    assert response.status_code == 422 and "options.encoding" in response.json["detail"]


def test_upload_over_the_limit_is_413(settings: Any, clean_db: Engine) -> None:
    from api import create_app
    from core.queue import RecordingPublisher

    app = create_app(settings.model_copy(update={"max_upload_bytes": 2048}), publisher=RecordingPublisher())
    client = admin_client(app)
    big = b"a\n" + b"1\n" * 5000
    raw = client.post("/v1/datasets", data=big, content_type="text/csv")
    multipart = client.post("/v1/datasets", data={"file": (io.BytesIO(big), "big.csv")},
                            content_type="multipart/form-data")  # fmt: skip
    for response in (raw, multipart):
        assert response.status_code == 413 and response.mimetype == PROBLEM
    assert files_on_disk(settings.data_dir) == [] and count(clean_db, Dataset) == 0
    app.extensions["conveyor"].engine.dispose()


def test_multipart_without_file_part(client: FlaskClient) -> None:
    response = client.post("/v1/datasets", data={"name": "x"}, content_type="multipart/form-data")
    assert response.status_code == 422 and response.json["errors"] == [{"field": "file", "message": "missing"}]


def test_rows_filters_sort_and_paging(upload: Upload, client: FlaskClient) -> None:
    dataset = upload(FLIGHTS, schema={"carrier": "string", "origin": "string", "delay": "integer"})["dataset"]
    path = f"/v1/datasets/{dataset['id']}/rows"

    def get(query: str) -> Any:
        return client.get(f"{path}?{query}")

    assert [r["carrier"] for r in get("").json["items"]] == ["AA", "UA", "AA", "DL", "B6"]  # file order
    assert [r["delay"] for r in get("filter=origin:eq:JFK&sort=-delay").json["items"]] == [5, -2, None]
    assert [r["delay"] for r in get("filter=delay:ge:5&filter=carrier:ne:B6").json["items"]] == [5, 30]
    assert [r["carrier"] for r in get("filter=delay:is_null").json["items"]] == ["DL"]
    assert [r["origin"] for r in get("filter=origin:contains:G").json["items"]] == ["LGA"]
    assert get("filter=origin:contains:%25").json["items"] == []  # wildcards are literal
    assert [r["carrier"] for r in get("sort=carrier,-delay&limit=2&offset=1").json["items"]] == ["AA", "B6"]
    bad_queries = ("filter=nope:eq:1", "filter=delay:gt:abc", "filter=delay:gt:99999999999999999999",
                   "filter=delay:like:1", "filter=delay:eq", "sort=-nope", "filter=delay:contains:1")  # fmt: skip
    for bad in bad_queries:
        response = get(bad)
        assert response.status_code == 400 and response.json["type"] == "urn:conveyor:problem:bad-query", bad
    assert get("limit=0").status_code == 422 and get("limit=5000").status_code == 422


def test_rows_of_a_dataset_without_data_is_409(client: FlaskClient) -> None:
    accepted = client.post("/v1/datasets", data=FLIGHTS, content_type="text/csv").json  # ingest not run
    response = client.get(f"/v1/datasets/{accepted['dataset']['id']}/rows")
    assert response.status_code == 409 and response.json["type"] == "urn:conveyor:problem:dataset-not-ready"


def test_rejects_and_list(upload: Upload, client: FlaskClient) -> None:
    dataset = upload("n\n1\nx\n3\ny\n", schema={"n": "integer"})["dataset"]
    page = client.get(f"/v1/datasets/{dataset['id']}/rejects?limit=1&offset=1").json
    assert [(r["line"], r["column"], r["value"], r["reason"]) for r in page["items"]] == [
        (5, "n", "y", "not an integer")
    ]
    assert [d["id"] for d in client.get("/v1/datasets").json["items"]] == [dataset["id"]]


def test_delete_drops_table_rows_and_files(
    upload: Upload, client: FlaskClient, settings: Any, clean_db: Engine, tables: Callable[[], set[str]]
) -> None:
    dataset = upload(FLIGHTS)["dataset"]
    assert len(files_on_disk(settings.data_dir)) == 1 and len(tables()) == 1
    assert client.delete(f"/v1/datasets/{dataset['id']}").status_code == 204
    assert client.get(f"/v1/datasets/{dataset['id']}").status_code == 404
    assert tables() == set() and files_on_disk(settings.data_dir) == []
    assert count(clean_db, Dataset) == 0 and count(clean_db, StoredFile) == 0


@pytest.mark.parametrize("suffix", ["", "/rows", "/rejects"])
@pytest.mark.parametrize("dataset_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
def test_unknown_dataset_is_404(client: FlaskClient, suffix: str, dataset_id: str) -> None:
    response = client.get(f"/v1/datasets/{dataset_id}{suffix}")
    assert response.status_code == 404 and response.mimetype == PROBLEM
    upload = client.post(f"/v1/datasets/{dataset_id}/ingest", data=FLIGHTS, content_type="text/csv")
    assert upload.status_code == 404


def test_ingest_into_existing_refuses_a_schema_and_a_bad_mode(upload: Upload, client: FlaskClient) -> None:
    dataset = upload(FLIGHTS)["dataset"]
    path = f"/v1/datasets/{dataset['id']}/ingest"
    assert client.post(f"{path}?mode=merge", data=FLIGHTS, content_type="text/csv").status_code == 422
    assert client.post(f'{path}?schema={{"a":"integer"}}', data=FLIGHTS, content_type="text/csv").status_code == 422
    missing = client.post(path, data="carrier\nAA\n", content_type="text/csv")
    assert missing.status_code == 202  # its other columns are nullable: filled with nulls (test_schema_evolution.py)


def test_dataset_names_are_unique_per_tenant(client: FlaskClient, upload: Upload, settings: Any,
                                             clean_db: Engine) -> None:  # fmt: skip
    first = upload(FLIGHTS, name="flights")["dataset"]
    on_disk = files_on_disk(settings.data_dir)
    raw = client.post("/v1/datasets?name=flights", data=FLIGHTS.encode(), content_type="text/csv")
    multipart = client.post("/v1/datasets", data={"file": (io.BytesIO(FLIGHTS.encode()), "x.csv"), "name": "flights"},
                            content_type="multipart/form-data")  # fmt: skip
    for refused in (raw, multipart):
        assert refused.status_code == 409 and refused.mimetype == PROBLEM, refused.json
        assert refused.json["type"] == "urn:conveyor:problem:dataset-name-taken"
        assert (
            refused.json["dataset_id"] == first["id"] and f"/v1/datasets/{first['id']}/ingest" in refused.json["detail"]
        )
    assert count(clean_db, Dataset) == 1 and files_on_disk(settings.data_dir) == on_disk  # the refused left nothing
    # the file's name is the default name, so the same file twice is the same 409
    named_by_file = client.post("/v1/datasets", data={"file": (io.BytesIO(FLIGHTS.encode()), "f.csv")},
                                content_type="multipart/form-data")  # fmt: skip
    assert named_by_file.status_code == 202 and named_by_file.json["dataset"]["name"] == "f.csv"
    again = client.post("/v1/datasets", data={"file": (io.BytesIO(FLIGHTS.encode()), "f.csv")},
                        content_type="multipart/form-data")  # fmt: skip
    assert again.status_code == 409 and again.json["dataset_id"] == named_by_file.json["dataset"]["id"]
    # another tenant has names of its own
    other = admin_client(client.application, "other")
    assert other.post("/v1/datasets?name=flights", data=FLIGHTS.encode(), content_type="text/csv").status_code == 202
    # deleted, a name is free again
    assert client.delete(f"/v1/datasets/{first['id']}").status_code == 204
    assert client.post("/v1/datasets?name=flights", data=FLIGHTS.encode(), content_type="text/csv").status_code == 202


def test_a_raw_upload_keeps_the_file_name_it_was_sent_with(client: FlaskClient, upload: Upload) -> None:
    by_query = upload(FLIGHTS, filename="flights.csv")["dataset"]
    assert by_query["source"]["filename"] == by_query["name"] == "flights.csv"
    disposed = client.post("/v1/datasets", data=FLIGHTS.encode(), content_type="text/csv",
                           headers={"Content-Disposition": 'attachment; filename="../../etc/june.csv"'})  # fmt: skip
    assert disposed.status_code == 202 and disposed.json["dataset"]["name"] == "june.csv"  # a name, never a path
    unnamed = [client.post("/v1/datasets", data=FLIGHTS.encode(), content_type="text/csv") for _ in range(3)]
    assert [r.json["dataset"]["name"] for r in unnamed] == ["upload", "upload (2)", "upload (3)"]
