"""Files as other tools write them, ingested without options on each backend: null markers (R's `NA`, pandas' empty
fields and `NaN`, a database export's `\\N`), a schema inferred from a sample spread over the whole file, and columns
that widen losslessly when the ingest meets a value the sample did not show."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select

from core.models import DatasetReject
from tests.datasets.conftest import rows_of

Upload = Callable[..., dict[str, Any]]


def types_of(dataset: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["type"] for c in dataset["columns"]}


def markers_of(dataset: dict[str, Any]) -> dict[str, list[str]]:
    return {c["name"]: c["null_values"] for c in dataset["columns"]}


def nulls(rows: list[dict[str, Any]], column: str) -> int:
    return sum(1 for row in rows if row[column] is None)


def reject_lines(engine: Engine, dataset_id: str) -> list[tuple[int, str | None, str | None]]:
    with engine.connect() as connection:
        query = select(DatasetReject.line, DatasetReject.column, DatasetReject.value).where(
            DatasetReject.dataset_id == uuid.UUID(dataset_id)
        )
        return sorted(tuple(r) for r in connection.execute(query))  # type: ignore[misc]


def r_write_csv(rows: int) -> tuple[str, dict[str, Any]]:
    """As R's write.csv writes a data frame: names and text quoted, logicals TRUE/FALSE, a missing value as a bare
    NA in every column, the first one after row 1,700 (past what one 128 KiB block holds). The country of Namibia is
    the text "NA". Returns the file and its ground truth."""
    lines = ['"id","carrier","country","delay","on_time","day"']
    truth = {"delay_na": 0, "on_time_na": 0, "day_na": 0, "namibia": 0, "delay_sum": 0.0}
    for i in range(1, rows + 1):
        missing = i > 2_000 and i % 7 == 0
        delay = "NA" if missing else f"{(i % 90) - 15}.5"
        on_time = "NA" if missing and i % 2 else ("TRUE" if i % 3 else "FALSE")
        day = "NA" if missing and i % 3 == 0 else f"2026-01-{(i % 28) + 1:02d}"
        country = '"NA"' if i % 11 == 0 else '"US"'
        lines.append(f'{i},"AA",{country},{delay},{on_time},{day}')
        truth["delay_na"] += delay == "NA"
        truth["on_time_na"] += on_time == "NA"
        truth["day_na"] += day == "NA"
        truth["namibia"] += country == '"NA"'
        truth["delay_sum"] += 0.0 if delay == "NA" else float(delay)
    return "\n".join(lines) + "\n", truth


def test_a_file_written_by_r_reads_na_as_null_in_typed_columns_and_keeps_it_as_text(
    upload: Upload, clean_db: Engine
) -> None:
    body, truth = r_write_csv(5_000)
    done = upload(body, name="flights.csv")
    dataset = done["dataset"]
    assert done["job"].status == "succeeded", done["job"].error
    assert dataset["row_count"] == 5_000 and dataset["reject_count"] == 0
    assert types_of(dataset) == {"id": "integer", "carrier": "string", "country": "string", "delay": "float",
                                 "on_time": "boolean", "day": "date"}  # fmt: skip
    rows = rows_of(clean_db, dataset["id"], limit=5_000)
    assert nulls(rows, "delay") == truth["delay_na"] > 0
    assert nulls(rows, "on_time") == truth["on_time_na"] > 0 and nulls(rows, "day") == truth["day_na"] > 0
    assert sum(r["delay"] or 0 for r in rows) == pytest.approx(truth["delay_sum"])
    assert sum(r["country"] == "NA" for r in rows) == truth["namibia"] and nulls(rows, "country") == 0
    markers = markers_of(dataset)  # what the ingest applied, shown back per column
    assert "NA" in markers["delay"] and "NA" in markers["day"] and "#N/A" in markers["on_time"]
    assert markers["country"] == ["", "\\N"]


def test_options_null_values_replace_the_defaults(upload: Upload, clean_db: Engine) -> None:
    body, truth = r_write_csv(2_100)
    dataset = upload(body, options={"null_values": [""]})["dataset"]
    assert all(markers == [""] for markers in markers_of(dataset).values())
    assert types_of(dataset)["delay"] == "string" and types_of(dataset)["id"] == "integer"  # NA is text now
    rows = rows_of(clean_db, dataset["id"], limit=5_000)
    assert sum(r["delay"] == "NA" for r in rows) == truth["delay_na"] > 0 and nulls(rows, "delay") == 0


def test_a_column_declares_its_own_markers(upload: Upload, clean_db: Engine) -> None:
    body = "n,s\n1,a\n-,b\nNA,c\n4,-\n"
    schema = {"n": {"type": "integer", "null_values": ["-"]}, "s": "string"}
    done = upload(body, schema=schema)
    assert [r["n"] for r in rows_of(clean_db, done["dataset"]["id"])] == [1, None, 4]
    assert [r["s"] for r in rows_of(clean_db, done["dataset"]["id"])] == ["a", "b", "-"]
    assert reject_lines(clean_db, done["dataset"]["id"]) == [(4, "n", "NA")]
    assert markers_of(done["dataset"]) == {"n": ["-"], "s": ["", "\\N"]}


def test_a_file_written_by_pandas(upload: Upload, clean_db: Engine) -> None:
    """df.to_csv(index=False): a missing number or text is an empty field (or NaN with na_rep="NaN"), an integer
    column with a gap is written as floats, booleans as True/False."""
    body = "id,score,count,label,flag\n1,1.5,3.0,a,True\n2,,,b,False\n3,NaN,4.0,,True\n4,2.25,,d,\n"
    dataset = upload(body)["dataset"]
    assert types_of(dataset) == {"id": "integer", "score": "float", "count": "float", "label": "string",
                                 "flag": "boolean"}  # fmt: skip
    rows = rows_of(clean_db, dataset["id"])
    assert [r["score"] for r in rows] == [1.5, None, None, 2.25]
    assert [r["count"] for r in rows] == [3.0, None, 4.0, None]
    assert [r["label"] for r in rows] == ["a", "b", None, "d"] and [r["flag"] for r in rows] == [
        True,
        False,
        True,
        None,
    ]
    assert dataset["reject_count"] == 0


def test_a_database_export_with_backslash_n(upload: Upload, clean_db: Engine) -> None:
    """PostgreSQL's COPY … TO (text format) and MySQL's SELECT … INTO OUTFILE: tabs, NULL as \\N, booleans t/f."""
    body = (
        "id\tname\tamount\tcreated\tactive\n"
        "1\tAda\t10.5\t2026-01-01 10:00:00+00\tt\n"
        "2\t\\N\t\\N\t\\N\tf\n"
        "3\tNA\t7\t2026-01-03 00:00:00+00\t\\N\n"
    )
    dataset = upload(body, options={"delimiter": "\t"})["dataset"]
    assert types_of(dataset) == {"id": "integer", "name": "string", "amount": "float", "created": "timestamp",
                                 "active": "boolean"}  # fmt: skip
    rows = rows_of(clean_db, dataset["id"])
    assert rows[1] == {"id": 2, "name": None, "amount": None, "created": None, "active": False}
    assert rows[2]["name"] == "NA" and rows[2]["active"] is None and rows[2]["amount"] == 7.0
    assert rows[0]["created"] == datetime(2026, 1, 1, 10, tzinfo=UTC) and dataset["reject_count"] == 0


def test_json_lines_markers_apply_to_typed_columns_only(upload: Upload, clean_db: Engine) -> None:
    body = "".join(json.dumps(o) + "\n" for o in [{"n": 1, "s": ""}, {"n": "NA", "s": "NA"}, {"n": None, "s": None},
                                                  {"n": 4, "s": "x"}])  # fmt: skip
    dataset = upload(body, content_type="application/x-ndjson")["dataset"]
    assert types_of(dataset) == {"n": "integer", "s": "string"}
    assert rows_of(clean_db, dataset["id"]) == [{"n": 1, "s": ""}, {"n": None, "s": "NA"}, {"n": None, "s": None},
                                                {"n": 4, "s": "x"}]  # fmt: skip


def test_a_later_float_makes_a_float_column_and_a_later_word_one_reject(upload: Upload, clean_db: Engine) -> None:
    ints = "".join(f"{i},{i * 2}\n" for i in range(1, 5_001))
    floats = upload("n,m\n" + ints + "5001,3.5\n")
    assert types_of(floats["dataset"]) == {"n": "integer", "m": "float"}
    assert floats["dataset"]["reject_count"] == 0 and floats["dataset"]["row_count"] == 5_001
    rows = rows_of(clean_db, floats["dataset"]["id"], limit=6_000)
    assert sum(r["m"] for r in rows) == sum(i * 2 for i in range(1, 5_001)) + 3.5

    word = upload("n,m\n" + ints + "5001,abc\n5002,7\n")
    assert types_of(word["dataset"]) == {"n": "integer", "m": "integer"}
    assert reject_lines(clean_db, word["dataset"]["id"]) == [(5_002, "m", "abc")]
    assert word["dataset"]["row_count"] == 5_001


def test_only_true_and_false_make_an_inferred_boolean(upload: Upload, clean_db: Engine) -> None:
    """Norway's code is not false: NO/SE, yes/no and y/n stay text unless the schema says boolean (true/false, and
    t/f as PostgreSQL writes them, are booleans)."""
    text = "country,answer,initial,flag\nNO,yes,y,TRUE\nSE,no,n,false\nNO,yes,y,True\n"
    inferred = upload(text, name="nordic")["dataset"]
    assert types_of(inferred) == {"country": "string", "answer": "string", "initial": "string", "flag": "boolean"}
    assert [r["country"] for r in rows_of(clean_db, inferred["id"])] == ["NO", "SE", "NO"]
    schema = {"country": "string", "answer": "boolean", "initial": "boolean", "flag": "boolean"}
    declared = upload(text, name="declared", schema=schema)["dataset"]
    assert [(r["answer"], r["initial"], r["flag"]) for r in rows_of(clean_db, declared["id"])] == [
        (True, True, True), (False, False, False), (True, True, True)]  # fmt: skip


def test_the_sample_reaches_past_the_start_of_a_big_file(upload: Upload, clean_db: Engine) -> None:
    """A column empty for the file's first MiB and more is typed by the slices of the rest, not guessed as text."""
    rows = 120_000
    body = "id,late,text\n" + "".join(f"{i},{'' if i <= 80_000 else i % 1000},{'x' * 12}\n" for i in range(rows))
    assert len(body) > 2 * (1 << 20)
    dataset = upload(body)["dataset"]
    assert types_of(dataset) == {"id": "integer", "late": "integer", "text": "string"}
    assert dataset["row_count"] == rows and dataset["reject_count"] == 0


def test_the_ingest_widens_what_the_sample_missed(
    upload: Upload, clean_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a sample that sees only the file's start, a float and a timestamp met many batches in widen their
    columns: the rows already stored are converted, nothing is rejected, and the version records the change."""
    import core.datasets.inference as inference

    monkeypatch.setattr(inference, "HEAD_BYTES", 4096)
    monkeypatch.setattr(inference, "SLICES", 1)
    lines = [f"{i},2026-01-{i % 28 + 1:02d},{i}" for i in range(1, 60_001)]
    lines[45_000] = "45001,2026-03-01T12:30:00Z,2.5"  # line 45,002 of the file
    lines[50_000] = "50001,2026-03-02,oops"  # an integer column that became float: still a reject
    done = upload("id,day,n\n" + "\n".join(lines) + "\n")
    dataset = done["dataset"]
    assert done["job"].status == "succeeded", done["job"].error
    assert types_of(dataset) == {"id": "integer", "day": "timestamp", "n": "float"}
    changes = dataset["versions"][0]["schema_changes"]
    assert changes == [
        {"column": "day", "from": "date", "to": "timestamp", "line": 45_002, "value": "2026-03-01T12:30:00Z"},
        {"column": "n", "from": "integer", "to": "float", "line": 45_002, "value": "2.5"},
    ]
    assert done["result"]["schema_changes"] == changes
    assert reject_lines(clean_db, dataset["id"]) == [(50_002, "n", "oops")]
    assert dataset["row_count"] == 59_999
    rows = rows_of(clean_db, dataset["id"], limit=60_000)
    assert rows[0] == {"id": 1, "day": datetime(2026, 1, 2, tzinfo=UTC), "n": 1.0}  # stored before the widening
    assert rows[45_000] == {"id": 45_001, "day": datetime(2026, 3, 1, 12, 30, tzinfo=UTC), "n": 2.5}
    assert sum(r["n"] for r in rows) == sum(range(1, 60_001)) - 45_001 - 50_001 + 2.5
    assert isinstance(rows[-1]["day"], datetime) and rows[-1]["day"].date() == date(2026, 1, 60_000 % 28 + 1)


def test_a_declared_schema_never_widens(upload: Upload, clean_db: Engine) -> None:
    done = upload("n\n1\n2.5\n", schema={"n": "integer"})
    assert types_of(done["dataset"]) == {"n": "integer"}
    assert reject_lines(clean_db, done["dataset"]["id"]) == [(3, "n", "2.5")]
    assert done["dataset"]["versions"][0]["schema_changes"] is None


# --- Other inputs: compressed, TSV, Excel --------------------------------------------------------------------------


def compressed(data: bytes, codec: str) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, codec) as stream:
        stream.write(data)
    return bytes(sink.getvalue().to_pybytes())


def test_gzip_and_zstd_files_are_read_as_they_stream(upload: Upload, clean_db: Engine) -> None:
    body, truth = r_write_csv(3_000)
    by_name = upload(compressed(body.encode(), "gzip"), content_type="application/gzip", filename="flights.csv.gz")
    assert by_name["job"].status == "succeeded", by_name["job"].error
    dataset = by_name["dataset"]
    assert dataset["row_count"] == 3_000 and types_of(dataset)["delay"] == "float"
    assert nulls(rows_of(clean_db, dataset["id"], limit=3_000), "delay") == truth["delay_na"]

    lines = "".join(json.dumps({"n": i, "x": i / 2}) + "\n" for i in range(5_000)).encode()
    jsonl = upload(compressed(lines, "zstd"), content_type="application/x-ndjson")  # as sent with Content-Encoding
    assert types_of(jsonl["dataset"]) == {"n": "integer", "x": "float"} and jsonl["dataset"]["row_count"] == 5_000

    tsv = upload(compressed(b"a\tb\n1\tx\n2\ty\n", "gzip"), content_type="application/gzip", filename="t.tsv.gz")
    assert rows_of(clean_db, tsv["dataset"]["id"]) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]


def test_a_damaged_compressed_file_fails_its_ingest_clearly(upload: Upload, clean_db: Engine) -> None:
    body = "".join(f"{i},{i * 3}\n" for i in range(600_000)).encode()  # ~8 MB, cut after ~6: the start reads
    whole = compressed(b"n,m\n" + body, "gzip")
    done = upload(whole[: len(whole) * 4 // 5], content_type="application/gzip", filename="cut.csv.gz")
    assert done["job"].status == "failed" and done["job"].error["type"] == "FileUnreadable"
    assert "damaged or cut short" in done["job"].error["message"]
    assert done["dataset"]["status"] == "failed" and done["dataset"]["row_count"] == 0


def test_tsv_by_name_and_by_content_type(upload: Upload, clean_db: Engine) -> None:
    body = "city\tpopulation\nSão Paulo\t12400000\nLima, Peru\t10000000\n"
    by_name = upload(body.encode(), content_type="text/csv", filename="cities.tsv")["dataset"]
    by_type = upload(body.encode(), content_type="text/tab-separated-values", name="cities 2")["dataset"]
    for dataset in (by_name, by_type):
        assert types_of(dataset) == {"city": "string", "population": "integer"}
        assert rows_of(clean_db, dataset["id"])[1] == {"city": "Lima, Peru", "population": 10_000_000}
    assert by_name["source"]["format"] == "tsv"


def workbook(tmp_path: Any) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Summary"
    sheet.append(["nothing here"])
    flights = book.create_sheet("Flights")
    flights.append(["id", "carrier", "delay", "day", "departed", "cancelled", None])  # a formatted empty column
    flights.append([1, "AA", 1.5, datetime(2026, 1, 1), datetime(2026, 1, 1, 10, 30), False])
    flights.append([2, "NA", None, datetime(2026, 1, 2), datetime(2026, 1, 2, 11), True])
    flights.append([3, "UA", "#N/A", datetime(2026, 1, 3), None, False])
    flights.append([])  # a blank row
    flights.append([5, "DL", "#DIV/0!", datetime(2026, 1, 5), datetime(2026, 1, 5, 9), False])
    flights.append([6, "B6", 2, datetime(2026, 1, 6), datetime(2026, 1, 6, 8), True])
    for i in range(7, 1_207):  # enough rows that one #DIV/0! is a stray value, not a text column
        flights.append([i, "WN", i / 4, datetime(2026, 2, i % 28 + 1), datetime(2026, 2, 1, i % 24), False])
    path = tmp_path / "flights.xlsx"
    book.save(path)
    return bytes(path.read_bytes())


def test_an_excel_sheet_by_name_and_by_position(upload: Upload, clean_db: Engine, tmp_path: Any) -> None:
    body = workbook(tmp_path)
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    done = upload(body, content_type=xlsx, filename="flights.xlsx", options={"sheet": "Flights"})
    dataset = done["dataset"]
    assert done["job"].status == "succeeded", done["job"].error
    assert types_of(dataset) == {"id": "integer", "carrier": "string", "delay": "float", "day": "date",
                                 "departed": "timestamp", "cancelled": "boolean"}  # fmt: skip
    rows = rows_of(clean_db, dataset["id"], limit=2_000)
    assert rows[0] == {"id": 1, "carrier": "AA", "delay": 1.5, "day": date(2026, 1, 1),
                       "departed": datetime(2026, 1, 1, 10, 30, tzinfo=UTC), "cancelled": False}  # fmt: skip
    assert rows[1]["carrier"] == "NA" and rows[1]["delay"] is None and rows[2]["delay"] is None  # #N/A: null
    assert rows[3] == {"id": 6, "carrier": "B6", "delay": 2.0, "day": date(2026, 1, 6),
                       "departed": datetime(2026, 1, 6, 8, tzinfo=UTC), "cancelled": True}  # fmt: skip
    assert reject_lines(clean_db, dataset["id"]) == [(6, "delay", "#DIV/0!")]  # the sheet's row number
    by_position = upload(body, content_type=xlsx, name="second", sheet="1")["dataset"]
    assert dataset["row_count"] == by_position["row_count"] == 1_204 and by_position["source"]["format"] == "xlsx"
    assert sum(r["delay"] or 0 for r in rows) == 1.5 + 2 + sum(i / 4 for i in range(7, 1_207))


def test_an_unknown_sheet_or_a_file_that_is_no_workbook_is_refused(client: Any, tmp_path: Any) -> None:
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    response = client.post("/v1/datasets?sheet=Nope", data=workbook(tmp_path), content_type=xlsx)
    assert response.status_code == 422 and "'Summary', 'Flights'" in response.json["detail"]
    response = client.post("/v1/datasets?format=xlsx", data=b"a,b\n1,2\n", content_type="text/csv")
    assert response.status_code == 422 and ".xlsx" in response.json["detail"]
