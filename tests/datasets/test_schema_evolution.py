"""A dataset's schema as later files change it, on each backend: new columns added (or refused with schema=strict),
missing nullable columns filled with nulls, lossless widening of an inferred schema, and every other change of type
refused with a 422 that names the column and both types, leaving the dataset as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import Engine

from tests.datasets.conftest import rows_of

Upload = Callable[..., dict[str, Any]]


def into(dataset: dict[str, Any]) -> str:
    return f"/v1/datasets/{dataset['id']}/ingest"


def types_of(dataset: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["type"] for c in dataset["columns"]}


def test_an_appended_file_adds_its_new_columns_and_fills_the_missing_ones(upload: Upload, clean_db: Engine) -> None:
    first = upload("id,city\n1,Lima\n2,Quito\n")["dataset"]
    second = upload("id,population,founded\n3,2000000,1535-01-18\n", path=into(first), mode="append")["dataset"]
    assert second["version"] == 2 and second["row_count"] == 3
    assert types_of(second) == {"id": "integer", "city": "string", "population": "integer", "founded": "date"}
    assert all(c["nullable"] for c in second["columns"])
    assert second["versions"][1]["schema_changes"] == [{"column": "population", "added": "integer"},
                                                       {"column": "founded", "added": "date"}]  # fmt: skip
    rows = rows_of(clean_db, first["id"])
    assert [(r["id"], r["city"], r["population"]) for r in rows] == [(1, "Lima", None), (2, "Quito", None),
                                                                      (3, None, 2_000_000)]  # fmt: skip
    third = upload("city,id\nCusco,4\n", path=into(first), mode="append")["dataset"]  # any column order
    assert third["row_count"] == 4 and third["versions"][2]["schema_changes"] is None
    assert rows_of(clean_db, first["id"])[3] == {"id": 4, "city": "Cusco", "population": None, "founded": None}


def test_schema_strict_refuses_a_new_column_and_loads_nothing(upload: Upload, client: FlaskClient) -> None:
    first = upload("id,city\n1,Lima\n")["dataset"]
    refused = client.post(f"{into(first)}?mode=append&schema=strict", data="id,city,zip\n2,Quito,170\n",
                          content_type="text/csv")  # fmt: skip
    assert refused.status_code == 422 and refused.json["type"] == "urn:conveyor:problem:schema-conflict"
    assert "'zip' is not a column of the dataset (schema: strict)" in refused.json["detail"]
    assert refused.json["errors"] == [{"field": "columns.zip", "message": refused.json["errors"][0]["message"]}]
    after = client.get(f"/v1/datasets/{first['id']}").json
    assert after["row_count"] == 1 and after["version"] == 1 and types_of(after) == {"id": "integer", "city": "string"}
    bad = client.post(f"{into(first)}?schema=loose", data="id\n2\n", content_type="text/csv")
    assert bad.status_code == 422 and "evolve" in bad.json["detail"]


def test_a_change_of_type_is_refused_naming_the_column_and_both_types(upload: Upload, client: FlaskClient) -> None:
    first = upload("id,day\n1,2026-01-01\n")["dataset"]
    refused = client.post(f"{into(first)}?mode=append", data="id,day\nA7,2026-01-02\n", content_type="text/csv")
    assert refused.status_code == 422 and refused.json["type"] == "urn:conveyor:problem:schema-conflict"
    assert "'id' is integer in the dataset but string in the file" in refused.json["detail"]
    replace = client.post(f"{into(first)}?mode=replace", data="id,day\n1,soon\n", content_type="text/csv")
    assert replace.status_code == 422
    assert "'day' is date in the dataset but string in the file" in replace.json["detail"]
    assert client.get(f"/v1/datasets/{first['id']}").json["version"] == 1


def test_an_inferred_schema_widens_losslessly_on_append(upload: Upload, clean_db: Engine) -> None:
    first = upload("n,day\n1,2026-01-01\n2,2026-01-02\n")["dataset"]
    second = upload("n,day\n2.5,2026-01-03 10:30:00\n", path=into(first), mode="append")["dataset"]
    assert types_of(second) == {"n": "float", "day": "timestamp"}
    assert second["versions"][1]["schema_changes"] == [
        {"column": "n", "from": "integer", "to": "float"},
        {"column": "day", "from": "date", "to": "timestamp"},
    ]
    rows = rows_of(clean_db, first["id"])
    assert [r["n"] for r in rows] == [1.0, 2.0, 2.5]
    assert [r["day"].isoformat() for r in rows] == ["2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00",
                                                    "2026-01-03T10:30:00+00:00"]  # fmt: skip
    narrower = upload("n,day\n7,2026-02-01\n", path=into(first), mode="append")["dataset"]  # fits as it is
    assert types_of(narrower) == {"n": "float", "day": "timestamp"} and narrower["row_count"] == 4


def test_a_declared_schema_keeps_its_types_and_rejects_what_does_not_fit(upload: Upload) -> None:
    first = upload("n,s\n1,a\n", schema={"n": "integer", "s": {"type": "string", "nullable": False}})["dataset"]
    second = upload("n,s\n2.5,b\n3,c\n", path=into(first), mode="append")["dataset"]
    assert types_of(second) == {"n": "integer", "s": "string"} and second["row_count"] == 2
    assert second["reject_count"] == 1 and second["versions"][1]["schema_changes"] is None


def test_a_missing_column_that_may_not_be_empty_is_refused(upload: Upload, client: FlaskClient) -> None:
    first = upload("n,s\n1,a\n", schema={"n": "integer", "s": {"type": "string", "nullable": False}})["dataset"]
    refused = client.post(f"{into(first)}?mode=append", data="n\n2\n", content_type="text/csv")
    assert refused.status_code == 422 and refused.json["type"] == "urn:conveyor:problem:schema-conflict"
    assert "'s' is not in the file, and the dataset's column may not be empty" in refused.json["detail"]


def test_a_replace_with_other_columns_evolves_the_schema(upload: Upload, clean_db: Engine) -> None:
    first = upload("id,city\n1,Lima\n2,Quito\n")["dataset"]
    replaced = upload("id,zip\n9,170\n", path=into(first), mode="replace")["dataset"]
    assert types_of(replaced) == {"id": "integer", "city": "string", "zip": "integer"}
    assert rows_of(clean_db, first["id"]) == [{"id": 9, "city": None, "zip": 170}]
