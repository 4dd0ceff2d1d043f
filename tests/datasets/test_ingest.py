"""Ingest on each backend, through the API and the real executor: types, rejects with their lines, inferred
schemas, append and replace, atomicity when an ingest fails, is cancelled or was killed."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import adbc_driver_manager as adbc
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, select, text

from core.datasets.formats import BLOCK_BYTES
from core.models import DatasetReject
from tests.datasets.conftest import rows_of
from worker.executor import MessageOutcome

Upload = Callable[..., dict[str, Any]]
SCHEMA = {
    "id": "integer",
    "carrier": {"type": "string", "nullable": False},
    "delay": "float",
    "day": "date",
    "at": "timestamp",
    "cancelled": "boolean",
    "fare": {"type": "decimal", "precision": 8, "scale": 2},
}
CSV = """id,carrier,delay,day,at,cancelled,fare
1,AA,1.5,2026-01-01,2026-01-01T10:00:00Z,true,10.50
2,UA,-3,2026-01-02,2026-01-02 11:30:00,false,9
3,DL,x,2026-01-03,2026-01-03T00:00:00+02:00,no,1.00
4,,0,2026-01-04,2026-01-04T00:00:00Z,false,1.00
5,B6,2.25,2026-02-30,2026-01-05T00:00:00Z,false,1.00
6,WN,7,2026-01-06
7,AS,1e3,2026-01-07,,1,123456.78
"""


def rejects(engine: Engine, dataset_id: str) -> list[tuple[int, str | None, str]]:
    with engine.connect() as connection:
        query = select(DatasetReject.line, DatasetReject.column, DatasetReject.reason).where(
            DatasetReject.dataset_id == uuid.UUID(dataset_id)
        )
        return sorted(tuple(r) for r in connection.execute(query))  # type: ignore[misc]


def test_declared_schema_types_values_and_rejects_each_bad_row(upload: Upload, clean_db: Engine) -> None:
    done = upload(CSV, name="flights", schema=SCHEMA)
    assert done["job"].status == "succeeded", done["job"].error
    dataset = done["dataset"]
    assert dataset["status"] == "ready" and dataset["row_count"] == 3 and dataset["reject_count"] == 4
    assert dataset["schema_inferred"] is False and dataset["version"] == 1 and dataset["name"] == "flights"
    assert [(v["version"], v["rows_loaded"], v["rows_rejected"]) for v in dataset["versions"]] == [(1, 3, 4)]
    first, second, last = rows_of(clean_db, dataset["id"])
    at = datetime(2026, 1, 1, 10, tzinfo=UTC)
    assert first == {"id": 1, "carrier": "AA", "delay": 1.5, "day": date(2026, 1, 1), "at": at, "cancelled": True,
                     "fare": Decimal("10.50")}  # fmt: skip
    assert second["at"] == datetime(2026, 1, 2, 11, 30, tzinfo=UTC)  # no offset: read as UTC
    assert second["fare"] == Decimal("9.00") and second["delay"] == -3.0 and second["cancelled"] is False
    assert last["id"] == 7 and last["delay"] == 1000.0 and last["at"] is None and last["cancelled"] is True
    assert last["fare"] == Decimal("123456.78")
    assert rejects(clean_db, dataset["id"]) == [
        (4, "delay", "not a number"),
        (5, "carrier", "empty, but the column is not nullable"),
        (6, "day", "not a date (YYYY-MM-DD)"),
        (7, None, "has 4 fields, the header has 7"),
    ]
    assert done["result"] == {"dataset_id": dataset["id"], "version": 1, "rows_loaded": 3, "rows_rejected": 4,
                              "row_count": 3, "schema_changes": []}  # fmt: skip


def test_inferred_schema_is_shown_back_and_names_are_made_safe(upload: Upload, clean_db: Engine) -> None:
    csv = 'select,Order Date,from,2nd,"A b","a_b"\n1,2026-01-01,x,1.5,t,u\n2,2026-01-02,y,2,v,w\n'
    dataset = upload(csv)["dataset"]
    assert dataset["schema_inferred"] is True
    assert [(c["name"], c["column"], c["type"]) for c in dataset["columns"]] == [
        ("select", "select", "integer"),
        ("Order Date", "order_date", "date"),
        ("from", "from", "string"),
        ("2nd", "c_2nd", "float"),
        ("A b", "a_b", "string"),
        ("a_b", "a_b_2", "string"),
    ]
    rows = rows_of(clean_db, dataset["id"])
    assert rows[1] == {"select": 2, "Order Date": date(2026, 1, 2), "from": "y", "2nd": 2.0, "A b": "v", "a_b": "w"}


def test_append_then_replace(upload: Upload, clean_db: Engine) -> None:
    first = upload("n,s\n1,a\n2,b\nx,c\n", schema={"n": "integer", "s": "string"})["dataset"]
    path = f"/v1/datasets/{first['id']}/ingest"
    appended = upload("n,s\n3,c\n", path=path, mode="append")["dataset"]
    assert appended["row_count"] == 3 and appended["version"] == 2 and appended["reject_count"] == 1
    with clean_db.connect() as connection:  # `_row` keeps counting across appends
        table = appended["id"].replace("-", "")[:24]
        query = text(f'SELECT "_row", n FROM "ds_{table}" ORDER BY "_row"')  # noqa: S608 - our table name
        assert list(connection.execute(query)) == [
            (1, 1), (2, 2), (3, 3)]  # fmt: skip
    replaced = upload("n,s\n9,z\n", path=path, mode="replace")["dataset"]
    assert replaced["row_count"] == 1 and replaced["version"] == 3 and replaced["reject_count"] == 0
    assert [(v["mode"], v["row_count"]) for v in replaced["versions"]] == [("replace", 2), ("append", 3),
                                                                            ("replace", 1)]  # fmt: skip
    assert rows_of(clean_db, first["id"]) == [{"n": 9, "s": "z"}]
    assert rejects(clean_db, first["id"]) == []  # the replaced data's rejects went with it


def test_too_many_rejects_fails_clearly_and_leaves_nothing(
    upload: Upload, clean_db: Engine, tables: Callable[[], set[str]]
) -> None:
    bad = "n\n" + "".join(f"{i}\n" if i % 2 else "oops\n" for i in range(40))
    done = upload(bad, schema={"n": "integer"}, options={"max_rejects": 5})
    assert done["job"].status == "failed" and done["job"].attempt == 1  # a bad file is not retried
    assert done["job"].error["type"] == "TooManyRejects"
    assert (
        "more than max_rejects=5" in done["job"].error["message"] and "line 2 column n" in done["job"].error["message"]
    )
    dataset = done["dataset"]
    assert dataset["status"] == "failed" and dataset["row_count"] == 0 and dataset["error"]["type"] == "TooManyRejects"
    assert tables() == set()  # no table, no staging table
    assert rejects(clean_db, dataset["id"]) == []


def test_a_failed_replace_keeps_the_previous_data(
    upload: Upload, clean_db: Engine, tables: Callable[[], set[str]]
) -> None:
    first = upload("n\n1\n2\n", schema={"n": "integer"})["dataset"]
    before = tables()
    failed = upload("n\nx\ny\n", path=f"/v1/datasets/{first['id']}/ingest", mode="replace", options={"max_rejects": 0})
    assert failed["job"].status == "failed"
    dataset = failed["dataset"]
    assert dataset["status"] == "ready" and dataset["row_count"] == 2 and dataset["version"] == 1
    assert dataset["error"]["type"] == "TooManyRejects"
    assert rows_of(clean_db, first["id"]) == [{"n": 1}, {"n": 2}] and tables() == before


def test_leftovers_of_a_killed_attempt_are_cleared_by_the_next(
    client: FlaskClient, run_job: Callable[..., Any], clean_db: Engine, tables: Callable[[], set[str]]
) -> None:
    accepted = client.post("/v1/datasets", data="n\n1\n2\n", content_type="text/csv").json
    dataset_id, job_id = accepted["dataset"]["id"], uuid.UUID(accepted["job"]["id"])
    table = f"ds_{dataset_id.replace('-', '')[:24]}"
    staging = f"{table[:30]}_stg_{job_id.hex[:16]}"
    with clean_db.begin() as connection:  # what an attempt killed mid-COPY leaves behind
        connection.execute(text(f'CREATE TABLE "{staging}" ("_row" BIGINT, n BIGINT)'))
        connection.execute(text(f'INSERT INTO "{staging}" VALUES (1, 999)'))  # noqa: S608 - our table name
        connection.execute(DatasetReject.__table__.insert(), [{"dataset_id": uuid.UUID(dataset_id), "job_id": job_id,
                                                               "line": 7, "reason": "stale"}])  # fmt: skip
    assert run_job(job_id).status == "succeeded"
    assert rows_of(clean_db, dataset_id) == [{"n": 1}, {"n": 2}]
    assert tables() == {table} and rejects(clean_db, dataset_id) == []


def interrupted_ingest(
    client: FlaskClient, settings: Any, registry: Any, monkeypatch: pytest.MonkeyPatch, *, at_batch: int,
    interrupt: Callable[[str], None],
) -> tuple[dict[str, Any], Callable[[], MessageOutcome]]:  # fmt: skip
    """Upload 20,000 rows that are read in small blocks. Returns the upload's answer and `run`, which executes the
    ingest through the worker's executor, calling `interrupt(job_id)` when the reader reaches batch `at_batch`."""
    import core.datasets.formats as formats
    from core.queue import make_celery
    from worker.executor import Delivery, execute_message
    from worker.runtime import WorkerRuntime

    monkeypatch.setattr(formats, "BLOCK_BYTES", 1 << 10)  # many small batches
    body = "n\n" + "".join(f"{i}\n" for i in range(20_000))
    accepted: dict[str, Any] = client.post("/v1/datasets", data=body, content_type="text/csv").json
    job_id = accepted["job"]["id"]
    original = formats._number_rows
    batches = 0

    def counting(*args: Any) -> Any:
        nonlocal batches
        batches += 1
        if batches == at_batch:
            interrupt(job_id)
        return original(*args)

    monkeypatch.setattr(formats, "_number_rows", counting)

    def run() -> MessageOutcome:
        runtime = WorkerRuntime(settings, registry, make_celery(settings, name="test"))
        try:
            return execute_message(runtime, registry.get("dataset_ingest"), [job_id], Delivery("test"))
        finally:
            runtime.close()

    return accepted, run


def test_cancelled_ingest_leaves_no_partial_dataset(
    client: FlaskClient, settings: Any, registry: Any, clean_db: Engine, tables: Callable[[], set[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Cancel requested while the file streams: the progress check stops it mid-way, nothing is left."""

    def cancel(job_id: str) -> None:
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200

    accepted, run = interrupted_ingest(client, settings, registry, monkeypatch, at_batch=3, interrupt=cancel)
    monkeypatch.setattr("worker.context.PROGRESS_MIN_INTERVAL", 0.0)
    assert str(run()) == "1 cancelled"
    assert client.get(f"/v1/jobs/{accepted['job']['id']}").json["status"] == "cancelled"
    assert tables() == set()
    assert client.get(f"/v1/datasets/{accepted['dataset']['id']}").json["row_count"] == 0


def test_json_lines(upload: Upload, clean_db: Engine) -> None:
    body = '{"id": 1, "tags": ["a"], "ok": true}\n\nnot json\n[1, 2]\n{"id": "x", "ok": false}\n{"id": 3, "extra": 1}\n'
    done = upload(body, content_type="application/x-ndjson", schema={"id": "integer", "tags": "string",
                                                                     "ok": "boolean"})  # fmt: skip
    assert done["dataset"]["row_count"] == 2
    assert rows_of(clean_db, done["dataset"]["id"]) == [{"id": 1, "tags": '["a"]', "ok": True},
                                                        {"id": 3, "tags": None, "ok": None}]  # fmt: skip
    reasons = rejects(clean_db, done["dataset"]["id"])
    assert [(line, column) for line, column, _ in reasons] == [(3, None), (4, None), (5, "id")]
    assert reasons[0][2].startswith("not JSON") and reasons[1][2] == "not a JSON object"


def test_parquet_keeps_its_types(upload: Upload, clean_db: Engine, tmp_path: Any) -> None:
    table = pa.table({"n": pa.array([1, 2, None], pa.int32()), "when": pa.array([date(2026, 1, 1)] * 3),
                      "price": pa.array([1.5, 2.5, 3.5])})  # fmt: skip
    pq.write_table(table, tmp_path / "t.parquet")
    done = upload((tmp_path / "t.parquet").read_bytes(), content_type="application/vnd.apache.parquet")
    assert [(c["name"], c["type"]) for c in done["dataset"]["columns"]] == [("n", "integer"), ("when", "date"),
                                                                            ("price", "float")]  # fmt: skip
    assert rows_of(clean_db, done["dataset"]["id"])[2] == {"n": None, "when": date(2026, 1, 1), "price": 3.5}


def test_other_encodings_and_delimiters(upload: Upload, clean_db: Engine) -> None:
    body = "name;city\nJosé;Zürich\n".encode("latin-1")
    done = upload(body, options={"delimiter": ";", "encoding": "latin-1"})
    assert rows_of(clean_db, done["dataset"]["id"]) == [{"name": "José", "city": "Zürich"}]


def test_a_file_without_a_header_gets_numbered_columns(upload: Upload, clean_db: Engine) -> None:
    done = upload("1,x\n2,y\n", options={"header": False})
    assert [c["name"] for c in done["dataset"]["columns"]] == ["column_1", "column_2"]
    assert rows_of(clean_db, done["dataset"]["id"]) == [{"column_1": 1, "column_2": "x"},
                                                        {"column_1": 2, "column_2": "y"}]  # fmt: skip
    assert rejects(clean_db, done["dataset"]["id"]) == []


def test_many_blocks_keep_line_numbers(upload: Upload, clean_db: Engine) -> None:
    lines = ["n,s"] + [f"{i},{'x' * 40}" for i in range(2, 200_002)]
    bad = {1000, 95_000, 150_001, 199_999}
    for line in bad:
        lines[line - 1] = f"oops{line},y" if line % 2 else f"{line}"  # a bad integer, or a ragged row
    body = "\n".join(lines) + "\n"
    assert len(body) > 2 * BLOCK_BYTES
    done = upload(body, schema={"n": "integer", "s": "string"})
    assert [line for line, _, _ in rejects(clean_db, done["dataset"]["id"])] == sorted(bad)
    assert done["dataset"]["row_count"] == 200_000 - len(bad)


def test_nul_in_text_is_a_reject_not_a_crash(upload: Upload, clean_db: Engine) -> None:
    done = upload(b"s\nok\nbad\x00value\n", schema={"s": "string"})
    assert done["dataset"]["row_count"] == 1
    assert rejects(clean_db, done["dataset"]["id"]) == [(3, "s", "contains a NUL character")]


def test_a_connection_lost_mid_copy_is_retried_and_leaves_nothing(
    client: FlaskClient, settings: Any, registry: Any, clean_db: Engine, tables: Callable[[], set[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """PostgreSQL ends the COPY's connection (a restart, a failover): the attempt fails as retryable, and neither
    the staging table nor a row of it is left for the next one."""
    if clean_db.dialect.name != "postgresql":
        pytest.skip("SQLite's ingest has no COPY connection")

    def terminate_the_copy(_job_id: str) -> None:
        with clean_db.begin() as connection:
            ended = connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                            "query LIKE 'COPY%' AND pid <> pg_backend_pid()")).all()  # fmt: skip
        assert ended, "no COPY was running"

    accepted, run = interrupted_ingest(client, settings, registry, monkeypatch, at_batch=5,
                                       interrupt=terminate_the_copy)  # fmt: skip
    outcome = run()
    assert str(outcome) == "1 retrying" and isinstance(outcome.error, adbc.OperationalError)  # Celery is told RETRY
    job = client.get(f"/v1/jobs/{accepted['job']['id']}").json
    assert job["status"] == "retrying" and job["attempt"] == 1, job
    assert tables() == set()
    assert client.get(f"/v1/datasets/{accepted['dataset']['id']}").json["row_count"] == 0
