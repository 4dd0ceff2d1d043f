"""Aggregates and exports on each backend: submitted with POST /v1/jobs, run by the real executor; refused at
submit when they cannot run; exports downloaded with Content-Length and ETag."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq
import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from tests.datasets.conftest import rows_of

Upload = Callable[..., dict[str, Any]]
FLIGHTS = """carrier,origin,dep_delay,fare,dep_time
AA,JFK,10,100.50,2026-03-02T08:15:00Z
AA,JFK,20,50.25,2026-03-02T09:45:00Z
AA,LGA,,70.00,2026-03-03T10:00:00Z
UA,JFK,-5,80.00,2026-03-09T23:59:00Z
UA,JFK,15,20.00,2026-03-10T00:30:00Z
DL,BOS,7,10.00,2026-04-01T12:00:00Z
"""
SCHEMA = {"carrier": "string", "origin": "string", "dep_delay": "integer",
          "fare": {"type": "decimal", "precision": 10, "scale": 2}, "dep_time": "timestamp"}  # fmt: skip


@pytest.fixture
def flights(upload: Upload) -> dict[str, Any]:
    return upload(FLIGHTS, name="flights", schema=SCHEMA)["dataset"]


def submit(client: FlaskClient, run_job: Any, job_type: str, payload: dict[str, Any]) -> tuple[Any, Any]:
    response = client.post("/v1/jobs", json={"type": job_type, "payload": payload})
    assert response.status_code == 202, response.json
    job = run_job(response.json["id"])
    assert job.status == "succeeded", job.error
    return job, client.get(f"/v1/jobs/{job.id}/result").json["data"]


def test_group_by_with_every_metric_and_a_filter(
    flights: dict[str, Any], client: FlaskClient, run_job: Any, clean_db: Engine
) -> None:
    payload = {
        "dataset_id": flights["id"],
        "group_by": ["carrier"],
        "metrics": [{"op": "avg", "column": "dep_delay"}, {"op": "count"}, {"op": "count", "column": "dep_delay"},
                    {"op": "count_distinct", "column": "origin"}, {"op": "sum", "column": "fare"},
                    {"op": "min", "column": "dep_time"}, {"op": "max", "column": "origin"}],
        "filters": [{"column": "origin", "op": "ne", "value": "BOS"}],
        "name": "by carrier",
    }  # fmt: skip
    _, result = submit(client, run_job, "dataset_aggregate", payload)
    assert result["row_count"] == 2
    output = client.get(f"/v1/datasets/{result['dataset_id']}").json
    assert output["name"] == "by carrier" and output["status"] == "ready" and output["source"]["aggregate_of"]
    assert [(c["name"], c["type"]) for c in output["columns"]] == [
        ("carrier", "string"), ("avg_dep_delay", "float"), ("count", "integer"), ("count_dep_delay", "integer"),
        ("count_distinct_origin", "integer"), ("sum_fare", "decimal"), ("min_dep_time", "timestamp"),
        ("max_origin", "string"),
    ]  # fmt: skip
    rows = {r["carrier"]: r for r in rows_of(clean_db, result["dataset_id"])}
    assert rows["AA"]["avg_dep_delay"] == 15.0 and rows["AA"]["count"] == 3 and rows["AA"]["count_dep_delay"] == 2
    assert rows["AA"]["count_distinct_origin"] == 2 and float(rows["AA"]["sum_fare"]) == 220.75
    assert rows["AA"]["min_dep_time"] == datetime(2026, 3, 2, 8, 15, tzinfo=UTC) and rows["AA"]["max_origin"] == "LGA"
    assert rows["UA"]["avg_dep_delay"] == 5.0 and rows["UA"]["count"] == 2


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        ("day", {(2026, 3, 2): 2, (2026, 3, 3): 1, (2026, 3, 9): 1, (2026, 3, 10): 1, (2026, 4, 1): 1}),
        ("week", {(2026, 3, 2): 3, (2026, 3, 9): 2, (2026, 3, 30): 1}),  # weeks start on Monday
        ("month", {(2026, 3, 1): 5, (2026, 4, 1): 1}),
    ],
)
def test_time_buckets(
    flights: dict[str, Any], client: FlaskClient, run_job: Any, clean_db: Engine, unit: str,
    expected: dict[tuple[int, int, int], int],
) -> None:  # fmt: skip
    payload = {"dataset_id": flights["id"], "metrics": [{"op": "count", "name": "flights"}],
               "time_bucket": {"column": "dep_time", "unit": unit, "name": "period"}}  # fmt: skip
    _, result = submit(client, run_job, "dataset_aggregate", payload)
    rows = rows_of(clean_db, result["dataset_id"])
    assert {(r["period"].year, r["period"].month, r["period"].day): r["flights"] for r in rows} == expected
    assert all(r["period"].tzinfo is not None and r["period"].hour == 0 for r in rows)


def test_hour_bucket(flights: dict[str, Any], client: FlaskClient, run_job: Any, clean_db: Engine) -> None:
    payload = {"dataset_id": flights["id"], "metrics": [{"op": "count"}],
               "time_bucket": {"column": "dep_time", "unit": "hour"}}  # fmt: skip
    _, result = submit(client, run_job, "dataset_aggregate", payload)
    hours = sorted(r["dep_time_hour"] for r in rows_of(clean_db, result["dataset_id"]))
    assert hours[0] == datetime(2026, 3, 2, 8, tzinfo=UTC) and len(hours) == 6


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"group_by": ["nope"]}, "No column 'nope'"),
        ({"metrics": [{"op": "sum", "column": "carrier"}]}, "sum needs a numeric column"),
        ({"metrics": [{"op": "avg", "column": "origin"}]}, "avg needs a numeric column"),
        ({"metrics": [{"op": "max", "column": "nope"}]}, "No column 'nope'"),
        ({"filters": [{"column": "nope", "op": "eq", "value": 1}]}, "No column 'nope'"),
        ({"filters": [{"column": "dep_delay", "op": "gt", "value": "soon"}]}, "not a valid integer"),
        ({"filters": [{"column": "dep_delay", "op": "eq"}]}, "needs a value"),
        ({"time_bucket": {"column": "origin", "unit": "day"}}, "needs a timestamp or date column"),
        ({"metrics": [{"op": "count"}, {"op": "count"}]}, "repeated: count"),
        ({"dataset_id": "00000000-0000-0000-0000-000000000000"}, "does not exist"),
    ],
)
def test_aggregates_that_cannot_run_are_refused_at_submit(
    flights: dict[str, Any], client: FlaskClient, change: dict[str, Any], message: str
) -> None:
    payload = {"dataset_id": flights["id"], "group_by": ["carrier"], "metrics": [{"op": "count"}]} | change
    response = client.post("/v1/jobs", json={"type": "dataset_aggregate", "payload": payload})
    assert response.status_code in (404, 422) and response.mimetype == "application/problem+json"
    assert message in response.json["detail"], response.json
    assert client.get("/v1/jobs").json["items"][0]["type"] == "dataset_ingest"  # no aggregate job was made


def test_malformed_aggregate_payloads_are_422(flights: dict[str, Any], client: FlaskClient) -> None:
    for payload in ({"dataset_id": flights["id"], "metrics": []},
                    {"dataset_id": flights["id"], "metrics": [{"op": "median", "column": "fare"}]},
                    {"dataset_id": flights["id"], "metrics": [{"op": "sum"}]},
                    {"dataset_id": "x", "metrics": [{"op": "count"}]}):  # fmt: skip
        response = client.post("/v1/jobs", json={"type": "dataset_aggregate", "payload": payload})
        assert response.status_code == 422, payload


def download(client: FlaskClient, result: dict[str, Any]) -> Any:
    response = client.get(result["url"])
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == result["size"] == len(response.data)
    assert response.headers["ETag"] == f'"{result["sha256"]}"'
    assert client.get(result["url"], headers={"If-None-Match": response.headers["ETag"]}).status_code == 304
    return response


def test_export_csv_filtered_sorted_columns(flights: dict[str, Any], client: FlaskClient, run_job: Any) -> None:
    payload = {"dataset_id": flights["id"], "format": "csv", "columns": ["carrier", "dep_delay", "fare"],
               "filters": [{"column": "origin", "op": "eq", "value": "JFK"}], "sort": ["-dep_delay"]}  # fmt: skip
    _, result = submit(client, run_job, "dataset_export", payload)
    assert result["rows"] == 4
    response = download(client, result)
    assert response.mimetype == "text/csv" and "flights.csv" in response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.data.decode())))
    assert rows == [["carrier", "dep_delay", "fare"], ["AA", "20", "50.25"], ["UA", "15", "20.00"],
                    ["AA", "10", "100.50"], ["UA", "-5", "80.00"]]  # fmt: skip


def test_export_jsonl_and_parquet_round_trip(flights: dict[str, Any], client: FlaskClient, run_job: Any) -> None:
    _, as_json = submit(client, run_job, "dataset_export", {"dataset_id": flights["id"], "format": "jsonl"})
    lines = [json.loads(line) for line in download(client, as_json).data.decode().splitlines()]
    assert len(lines) == 6 and lines[2] == {"carrier": "AA", "origin": "LGA", "dep_delay": None, "fare": "70.00",
                                            "dep_time": "2026-03-03T10:00:00Z"}  # fmt: skip
    _, as_parquet = submit(client, run_job, "dataset_export", {"dataset_id": flights["id"], "format": "parquet"})
    table = pq.read_table(io.BytesIO(download(client, as_parquet).data))
    assert table.num_rows == 6 and table.column("dep_delay").to_pylist() == [10, 20, None, -5, 15, 7]
    assert str(table.schema.field("fare").type) == "decimal128(10, 2)"


def test_aggregate_output_names(flights: dict[str, Any], client: FlaskClient, run_job: Any) -> None:
    payload = {"dataset_id": flights["id"], "metrics": [{"op": "count"}]}
    names = []
    for _ in range(3):
        _, result = submit(client, run_job, "dataset_aggregate", payload)
        names.append(client.get(f"/v1/datasets/{result['dataset_id']}").json["name"])
    assert names == ["flights aggregate", "flights aggregate (2)", "flights aggregate (3)"]
    taken = client.post("/v1/jobs", json={"type": "dataset_aggregate", "payload": payload | {"name": "flights"}})
    assert taken.status_code == 409 and taken.json["dataset_id"] == flights["id"]


def test_every_text_export_writes_timestamps_as_the_rows_api_does(
    flights: dict[str, Any], client: FlaskClient, run_job: Any
) -> None:
    shown = [row["dep_time"] for row in client.get(f"/v1/datasets/{flights['id']}/rows?limit=10").json["items"]]
    assert shown[0] == "2026-03-02T08:15:00Z"
    _, as_csv = submit(client, run_job, "dataset_export", {"dataset_id": flights["id"], "format": "csv"})
    in_csv = [row["dep_time"] for row in csv.DictReader(io.StringIO(download(client, as_csv).data.decode()))]
    _, as_json = submit(client, run_job, "dataset_export", {"dataset_id": flights["id"], "format": "jsonl"})
    in_json = [json.loads(line)["dep_time"] for line in download(client, as_json).data.decode().splitlines()]
    assert in_csv == in_json == shown


def test_export_refusals_and_unknown_files(flights: dict[str, Any], client: FlaskClient) -> None:
    for payload in ({"dataset_id": flights["id"], "columns": ["nope"]},
                    {"dataset_id": flights["id"], "sort": ["-nope"]},
                    {"dataset_id": flights["id"], "format": "xlsx"}):  # fmt: skip
        assert client.post("/v1/jobs", json={"type": "dataset_export", "payload": payload}).status_code == 422
    for file_id in ("00000000-0000-0000-0000-000000000000", "nope"):
        response = client.get(f"/v1/files/{file_id}")
        assert response.status_code == 404 and response.mimetype == "application/problem+json"
