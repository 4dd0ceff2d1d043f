"""dataset_join and dataset_query on each backend: submitted with POST /v1/jobs, run by the real executor, results
checked row by row against a ground truth computed here from the same data; refused at submit (422, the field named)
when they cannot run; and the lineage a chain of transformations leaves."""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core.datasets.derived import read_inputs
from core.models import Dataset
from tests.datasets.conftest import rows_of

Upload = Callable[..., dict[str, Any]]
CARRIERS = {"AA": ("American", "US"), "UA": ("United", "US"), "LH": ("Lufthansa", "DE"), "ZZ": ("Nobody", None)}
FLIGHT_SCHEMA = {"id": "integer", "carrier": "string", "origin": "string", "dep_delay": "integer",
                 "fare": {"type": "decimal", "precision": 10, "scale": 2}, "dep_time": "timestamp"}  # fmt: skip


def flights_data(count: int = 400) -> list[dict[str, Any]]:
    """Flights with nulls in every nullable column, carriers that the carriers table lacks (XX) and delays of both
    signs, over March 2026."""
    rng = random.Random(19)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    rows = []
    for number in range(count):
        rows.append({
            "id": number,
            "carrier": rng.choice(["AA", "UA", "LH", "XX"]),
            "origin": rng.choice(["JFK", "LGA", "BOS", "na"]),
            "dep_delay": None if rng.random() < 0.1 else rng.randint(-30, 120),
            "fare": None if rng.random() < 0.1 else Decimal(rng.randint(1000, 90000)) / 100,
            "dep_time": start + timedelta(minutes=rng.randint(0, 30 * 24 * 60)),
        })  # fmt: skip
    return rows


def csv_of(rows: list[dict[str, Any]], columns: list[str]) -> str:
    def text(value: Any) -> str:
        if value is None:
            return ""
        return value.isoformat() if isinstance(value, datetime) else str(value)

    return "\n".join([",".join(columns), *(",".join(text(r[c]) for c in columns) for r in rows)]) + "\n"


@pytest.fixture
def flights(upload: Upload) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = flights_data()
    dataset = upload(csv_of(data, list(FLIGHT_SCHEMA)), name="flights", schema=FLIGHT_SCHEMA)["dataset"]
    return dataset, data


@pytest.fixture
def carriers(upload: Upload) -> dict[str, Any]:
    text = "code,carrier_name,country\n" + "".join(f"{c},{n},{k or ''}\n" for c, (n, k) in CARRIERS.items())
    return upload(text, name="carriers")["dataset"]


def run_transform(client: FlaskClient, run_job: Any, job_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/jobs", json={"type": job_type, "payload": payload})
    assert response.status_code == 202, response.json
    job = run_job(response.json["id"])
    assert job.status == "succeeded", job.error
    result = client.get(f"/v1/jobs/{job.id}/result").json["data"]
    return client.get(f"/v1/datasets/{result['dataset_id']}").json | {"job_id": str(job.id)}


def refused(client: FlaskClient, job_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/jobs", json={"type": job_type, "payload": payload})
    assert response.status_code == 422, response.json
    assert response.content_type == "application/problem+json"
    return dict(response.json)


@pytest.mark.parametrize("how", ["inner", "left"])
def test_a_join_matches_the_ground_truth(
    flights: tuple[dict[str, Any], list[dict[str, Any]]], carriers: dict[str, Any], client: FlaskClient,
    run_job: Any, clean_db: Engine, how: str,
) -> None:  # fmt: skip
    dataset, data = flights
    payload = {"left": {"dataset_id": dataset["id"], "columns": ["id", "carrier", "fare"]},
               "right": {"dataset_id": carriers["id"]}, "on": [{"left": "carrier", "right": "code"}],
               "how": how}  # fmt: skip
    output = run_transform(client, run_job, "dataset_join", payload)
    # the right's key is kept (its name differs from the left's), every column typed as its source
    assert [(c["name"], c["type"], c["nullable"]) for c in output["columns"]] == [
        ("id", "integer", True), ("carrier", "string", True), ("fare", "decimal", True),
        ("code", "string", True), ("carrier_name", "string", True), ("country", "string", True),
    ]  # fmt: skip
    expected = []
    for row in data:
        match = CARRIERS.get(row["carrier"])
        if match is None and how == "inner":
            continue
        right = (row["carrier"], *match) if match else (None, None, None)
        expected.append((row["id"], row["carrier"], row["fare"], *right))
    rows = rows_of(clean_db, output["id"])
    got = [(r["id"], r["carrier"], r["fare"], r["code"], r["carrier_name"], r["country"]) for r in rows]
    assert got == expected  # in the left's order
    assert output["row_count"] == len(expected) and 0 < len(expected) <= len(data)
    assert (how == "left") == (len(expected) == len(data))


def test_a_join_on_a_key_of_one_name_keeps_it_once_and_suffixes_a_name_taken(
    upload: Upload, client: FlaskClient, run_job: Any, clean_db: Engine
) -> None:
    left = upload("k,value,note\n1,10,a\n2,20,b\n2,21,c\n3,30,\n", name="left")["dataset"]
    right = upload("k,value\n2,200\n2,201\n3,300\n4,400\n", name="right")["dataset"]
    payload = {"left": {"dataset_id": left["id"]}, "right": {"dataset_id": right["id"], "suffix": "_r"}, "on": ["k"],
               "name": "joined"}  # fmt: skip
    output = run_transform(client, run_job, "dataset_join", payload)
    assert output["name"] == "joined"
    assert [c["name"] for c in output["columns"]] == ["k", "value", "note", "value_r"]
    rows = [(r["k"], r["value"], r["note"], r["value_r"]) for r in rows_of(clean_db, output["id"])]
    # many to many: each of the left's k=2 rows meets both of the right's, in (left, right) order
    assert rows == [(2, 20, "b", 200), (2, 20, "b", 201), (2, 21, "c", 200), (2, 21, "c", 201), (3, 30, None, 300)]


def test_a_dataset_joined_with_itself(upload: Upload, client: FlaskClient, run_job: Any, clean_db: Engine) -> None:
    staff = upload("id,name,manager\n1,Ada,\n2,Bob,1\n3,Cy,1\n4,Di,2\n", name="staff")["dataset"]
    payload = {"left": {"dataset_id": staff["id"], "columns": ["name", "manager"]},
               "right": {"dataset_id": staff["id"], "columns": ["name"], "suffix": "_of_manager"},
               "on": [{"left": "manager", "right": "id"}], "how": "left"}  # fmt: skip
    output = run_transform(client, run_job, "dataset_join", payload)
    rows = [(r["name"], r["name_of_manager"]) for r in rows_of(clean_db, output["id"])]
    assert rows == [("Ada", None), ("Bob", "Ada"), ("Cy", "Ada"), ("Di", "Bob")]
    assert output["lineage"]["inputs"] == [{"dataset_id": staff["id"], "name": "staff", "version": 1}]


def sql_mod(a: int, b: int) -> int | None:
    return None if b == 0 else int(math.fmod(a, b))  # SQL's %: the dividend's sign


def test_a_query_derives_and_filters_as_the_ground_truth(
    flights: tuple[dict[str, Any], list[dict[str, Any]]], client: FlaskClient, run_job: Any, clean_db: Engine
) -> None:
    dataset, data = flights
    select = [
        "id",
        {"name": "delay_hours", "expr": "dep_delay / 60"},
        {"name": "delay_or_zero", "expr": "coalesce(dep_delay, 0) * 2 - 1"},
        {"name": "fare_with_tax", "expr": "fare * 1.25"},
        {"name": "origin_lower", "expr": "lower(origin) + '/' + upper(carrier)"},
        {"name": "y", "expr": "year(dep_time)"}, {"name": "m", "expr": "month(dep_time)"},
        {"name": "d", "expr": "day(dep_time)"}, {"name": "h", "expr": "hour(dep_time)"},
        {"name": "wd", "expr": "weekday(dep_time)"}, {"name": "day", "expr": "date(dep_time)"},
        {"name": "label", "expr": "'late' if dep_delay > 15 else 'on time'"},
        {"name": "remainder", "expr": "dep_delay % 7"},
        {"name": "per_minute", "expr": "fare / dep_delay"},
        {"name": "cheap", "expr": "fare < 100 or fare is None"},
    ]  # fmt: skip
    where = "origin in ['JFK', 'na'] and dep_time >= '2026-03-05' and not (carrier == 'XX' and dep_delay < 0)"
    output = run_transform(client, run_job, "dataset_query", {"dataset_id": dataset["id"], "select": select,
                                                               "where": where})  # fmt: skip
    types = {c["name"]: (c["type"], c.get("scale")) for c in output["columns"]}
    assert types == {"id": ("integer", None), "delay_hours": ("float", None), "delay_or_zero": ("integer", None),
                     "fare_with_tax": ("decimal", 4), "origin_lower": ("string", None), "y": ("integer", None),
                     "m": ("integer", None), "d": ("integer", None), "h": ("integer", None), "wd": ("integer", None),
                     "day": ("date", None), "label": ("string", None), "remainder": ("integer", None),
                     "per_minute": ("float", None), "cheap": ("boolean", None)}  # fmt: skip
    expected = []
    for r in data:
        delay, fare, moment = r["dep_delay"], r["fare"], r["dep_time"]
        # SQL's logic of three values: XX with no delay is `not (true and null)`, null, so the row is left out
        excluded = r["carrier"] == "XX" and (delay is None or delay < 0)
        if r["origin"] not in ("JFK", "na") or moment < datetime(2026, 3, 5, tzinfo=UTC) or excluded:
            continue
        expected.append({
            "id": r["id"],
            "delay_hours": None if delay is None else delay / 60,
            "delay_or_zero": (delay or 0) * 2 - 1,
            "fare_with_tax": None if fare is None else fare * Decimal("1.25"),
            "origin_lower": f"{r['origin'].lower()}/{r['carrier'].upper()}",
            "y": moment.year, "m": moment.month, "d": moment.day, "h": moment.hour, "wd": moment.isoweekday(),
            "day": moment.date(),
            "label": "late" if delay is not None and delay > 15 else "on time",
            "remainder": None if delay is None else sql_mod(delay, 7),
            "per_minute": None if fare is None or not delay else float(fare) / delay,
            "cheap": True if fare is None else fare < 100,
        })  # fmt: skip
    rows = rows_of(clean_db, output["id"])
    assert len(rows) == len(expected) == output["row_count"] > 20
    for got, want in zip(rows, expected, strict=True):
        for name in ("delay_hours", "per_minute"):
            assert (got[name] is None) == (want[name] is None), (name, got, want)
            assert got[name] is None or math.isclose(got[name], want[name], rel_tol=1e-12), (name, got, want)
            got[name] = want[name]
        assert got == want


def test_a_query_keeps_every_column_by_default_and_can_only_filter(
    flights: tuple[dict[str, Any], list[dict[str, Any]]], client: FlaskClient, run_job: Any, clean_db: Engine
) -> None:
    dataset, data = flights
    output = run_transform(client, run_job, "dataset_query", {"dataset_id": dataset["id"], "where": "fare is None",
                                                               "name": "no fare"})  # fmt: skip
    assert output["name"] == "no fare"
    assert [(c["name"], c["type"]) for c in output["columns"]] == [(c["name"], c["type"]) for c in dataset["columns"]]
    assert [r["id"] for r in rows_of(clean_db, output["id"])] == [r["id"] for r in data if r["fare"] is None]


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ({"select": [{"name": "x", "expr": "nope + 1"}]}, "payload.select.0.expr", "no column 'nope'"),
        ({"select": ["id", "missing"]}, "payload.select.1", "no column 'missing'"),
        ({"select": [{"name": "x", "expr": "origin + dep_delay"}]}, "payload.select.0.expr", "one type"),
        ({"select": [{"name": "x", "expr": "origin + 1"}]}, "payload.select.0.expr", "1 is not text; quote it"),
        ({"select": [{"name": "x", "expr": "__import__('os').system('id')"}]}, "payload.select.0.expr",
         "is not allowed here"),
        ({"select": [{"name": "x", "expr": "__import__('os')"}]}, "payload.select.0.expr", "no function __import__"),
        ({"select": [{"name": "x", "expr": "[c for c in origin]"}]}, "payload.select.0.expr", "is not allowed here"),
        ({"select": [{"name": "x", "expr": "dep_time.year"}]}, "payload.select.0.expr", "not allowed"),
        ({"select": [{"name": "x", "expr": "lower(dep_delay)"}]}, "payload.select.0.expr", "takes text"),
        ({"select": [{"name": "x", "expr": "year(origin)"}]}, "payload.select.0.expr", "date or timestamp"),
        ({"select": [{"name": "x", "expr": "fare % 2"}]}, "payload.select.0.expr", "whole numbers"),
        ({"select": [{"name": "x", "expr": "dep_delay +"}]}, "payload.select.0.expr", "cannot parse"),
        ({"select": [{"name": "x", "expr": "dep_delay == None"}]}, "payload.select.0.expr", "is None"),
        ({"where": "dep_time > 3"}, "payload.where", "not a valid timestamp"),
        ({"where": "dep_time > '2026-13-45'"}, "payload.where", "not a valid timestamp"),
        ({"where": "dep_delay"}, "payload.where", "a filter is a condition"),
        ({"where": "origin in ['JFK', 3]"}, "payload.where", "not text"),
        ({"select": ["id", {"name": "id", "expr": "id + 1"}]}, None, "unique"),
        ({"select": []}, None, "one column at least"),
        ({"where": "fare > 1e400"}, "payload.where", "not a finite number"),
        ({"where": "origin == 'a\\x00b'"}, "payload.where", "NUL"),
        ({"where": "origin == 1j"}, "payload.where", "constants are numbers"),
        ({"where": "(" * 300 + "1" + ")" * 300}, "payload.where", "cannot parse"),
        ({"where": " + ".join(["id"] * 300) + " > 0"}, "payload.where", "at most 400 terms"),
    ],
)  # fmt: skip
def test_a_query_that_cannot_run_is_refused_at_submit(
    flights: tuple[dict[str, Any], list[dict[str, Any]]], client: FlaskClient, payload: dict[str, Any],
    field: str | None, words: str,
) -> None:  # fmt: skip
    dataset, _ = flights
    problem = refused(client, "dataset_query", {"dataset_id": dataset["id"], **payload})
    assert words in problem["detail"], problem
    if field is not None:
        assert [e["field"] for e in problem["errors"]] == [field], problem


def test_a_join_that_cannot_run_is_refused_at_submit(
    flights: tuple[dict[str, Any], list[dict[str, Any]]], carriers: dict[str, Any], client: FlaskClient
) -> None:
    dataset, _ = flights
    left, right = {"dataset_id": dataset["id"]}, {"dataset_id": carriers["id"]}
    mistyped = {"left": left, "right": right, "on": [{"left": "id", "right": "code"}]}
    assert "do not compare" in refused(client, "dataset_join", mistyped)["detail"]
    assert (
        "No column 'code'" in refused(client, "dataset_join", {"left": left, "right": right, "on": ["code"]})["detail"]
    )
    clash = {"left": left, "right": {**right, "columns": ["code", "code"], "suffix": ""},
             "on": [{"left": "carrier", "right": "code"}]}  # fmt: skip
    assert "unique" in refused(client, "dataset_join", clash)["detail"]
    taken = client.post("/v1/jobs", json={"type": "dataset_join", "payload": {
        "left": left, "right": right, "on": [{"left": "carrier", "right": "code"}], "name": "flights"}})  # fmt: skip
    assert taken.status_code == 409 and taken.json["dataset_id"] == dataset["id"]


def test_a_zero_divisor_gives_null(upload: Upload, client: FlaskClient, run_job: Any, clean_db: Engine) -> None:
    numbers = upload("a,b\n7,2\n7,0\n-7,2\n,2\n", name="numbers")["dataset"]
    select = ["a", {"name": "q", "expr": "a / b"}, {"name": "r", "expr": "a % b"}]
    output = run_transform(client, run_job, "dataset_query", {"dataset_id": numbers["id"], "select": select})
    assert [(r["a"], r["q"], r["r"]) for r in rows_of(clean_db, output["id"])] == [
        (7, 3.5, 1), (7, None, None), (-7, -3.5, -1), (None, None, None)]  # fmt: skip


def test_lineage_after_a_chain_of_two_transformations(
    upload: Upload, client: FlaskClient, run_job: Any, clean_db: Engine
) -> None:
    """flights (ingest) → query → delayed; delayed ⋈ carriers → report. The report's lineage names the job that made
    it and both versions read, and its graph reaches the files; later versions of an input do not rewrite it."""
    first = upload("carrier,dep_delay\nAA,20\nUA,5\nAA,40\n", name="flights.csv")
    flights = first["dataset"]
    carriers = upload("carrier,carrier_name\nAA,American\nUA,United\n", name="carriers.csv")["dataset"]
    delayed = run_transform(client, run_job, "dataset_query", {"dataset_id": flights["id"], "where": "dep_delay > 10",
                                                                "name": "delayed"})  # fmt: skip
    report = run_transform(client, run_job, "dataset_join", {"left": {"dataset_id": delayed["id"]},
                                                             "right": {"dataset_id": carriers["id"]},
                                                             "on": ["carrier"], "name": "report"})  # fmt: skip
    assert [(r["carrier"], r["dep_delay"], r["carrier_name"]) for r in rows_of(clean_db, report["id"])] == [
        ("AA", 20, "American"), ("AA", 40, "American")]  # fmt: skip
    lineage = report["lineage"]
    assert (lineage["operation"], lineage["job_id"]) == ("join", report["job_id"])
    assert lineage["inputs"] == [{"dataset_id": delayed["id"], "name": "delayed", "version": 1},
                                 {"dataset_id": carriers["id"], "name": "carriers.csv", "version": 1}]  # fmt: skip
    graph = {node["name"]: node for node in lineage["graph"]}
    assert [node["name"] for node in lineage["graph"]] == ["report", "delayed", "carriers.csv", "flights.csv"]
    assert graph["delayed"]["operation"] == "query" and graph["delayed"]["job_id"] == delayed["job_id"]
    assert graph["delayed"]["inputs"] == [{"dataset_id": flights["id"], "name": "flights.csv", "version": 1}]
    assert graph["flights.csv"]["operation"] == "ingest" and graph["flights.csv"]["inputs"] == []
    assert graph["flights.csv"]["job_id"] == str(first["job"].id)
    assert graph["flights.csv"]["source"]["file_id"] and lineage["truncated"] is False
    # flights gets a second version; delayed still says it read the first
    upload("carrier,dep_delay\nLH,90\n", path=f"/v1/datasets/{flights['id']}/ingest", mode="append")
    again = client.get(f"/v1/datasets/{report['id']}").json["lineage"]["graph"]
    assert [(n["name"], n["version"]) for n in again] == [("report", 1), ("delayed", 1), ("carriers.csv", 1),
                                                           ("flights.csv", 1)]  # fmt: skip
    # a query now reads the second version
    rerun = run_transform(client, run_job, "dataset_query", {"dataset_id": flights["id"], "where": "dep_delay > 10"})
    assert rerun["lineage"]["inputs"] == [{"dataset_id": flights["id"], "name": "flights.csv", "version": 2}]
    assert rerun["row_count"] == 3
    # a deleted input stays in the graph under the name it had, marked as gone
    assert client.delete(f"/v1/datasets/{carriers['id']}").status_code == 204
    nodes = {n["name"]: n for n in client.get(f"/v1/datasets/{report['id']}").json["lineage"]["graph"]}
    assert nodes["carriers.csv"]["exists"] is False and nodes["carriers.csv"]["operation"] is None
    assert nodes["delayed"]["exists"] is True


def test_an_ingested_dataset_has_a_lineage_of_its_own(upload: Upload) -> None:
    made = upload("a\n1\n", name="one.csv")
    lineage = made["dataset"]["lineage"]
    assert (lineage["operation"], lineage["job_id"], lineage["inputs"]) == ("ingest", str(made["job"].id), [])
    assert [n["name"] for n in lineage["graph"]] == ["one.csv"]
    assert lineage["graph"][0]["source"]["file_id"] == str(made["job"].payload["file_id"])


def test_the_tables_date_parts_agree_for_date_columns(
    upload: Upload, client: FlaskClient, run_job: Any, clean_db: Engine
) -> None:
    days = upload("day\n2026-03-01\n2026-12-31\n", name="days", schema={"day": "date"})["dataset"]
    select = [{"name": "y", "expr": "year(day)"}, {"name": "wd", "expr": "weekday(day)"},
              {"name": "h", "expr": "hour(day)"}, {"name": "same", "expr": "date(day)"},
              {"name": "after", "expr": "day > '2026-06-01'"}]  # fmt: skip
    output = run_transform(client, run_job, "dataset_query", {"dataset_id": days["id"], "select": select})
    rows = [(r["y"], r["wd"], r["h"], r["same"], r["after"]) for r in rows_of(clean_db, output["id"])]
    assert rows == [(2026, date(2026, 3, 1).isoweekday(), 0, date(2026, 3, 1), False),
                    (2026, date(2026, 12, 31).isoweekday(), 0, date(2026, 12, 31), True)]  # fmt: skip
    assert Counter(c["type"] for c in output["columns"]) == {"integer": 3, "date": 1, "boolean": 1}


def test_the_inputs_are_share_locked_until_the_transformation_commits(upload: Upload, clean_db: Engine) -> None:
    """An ingest's swap locks its dataset's row FOR UPDATE: while a join or query has read an input, the swap waits,
    so the version recorded is the version read. (SQLite has one writer at a time, which gives the same.)"""
    if clean_db.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite serialises writers")
    dataset = upload("a\n1\n", name="locked")["dataset"]
    dataset_id = uuid.UUID(dataset["id"])
    with Session(clean_db) as reader, Session(clean_db) as swapper:
        [read] = read_inputs(reader, [dataset_id], tenant_id="default")
        assert read.version == 1
        with pytest.raises(OperationalError, match="could not obtain lock"):
            swapper.execute(select(Dataset).where(Dataset.id == dataset_id).with_for_update(nowait=True))
        swapper.rollback()
        reader.commit()  # the transformation's end releases it
        assert swapper.execute(select(Dataset).where(Dataset.id == dataset_id).with_for_update(nowait=True)).one()
