"""`conveyor dataset ...`: upload files as datasets, read them, aggregate, join, query and export them, over the
API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

from cli.client import ApiClient, api_option, call_api, client_for, download
from cli.progress import UploadProgress, follow, meter

FORMATS = ["csv", "tsv", "jsonl", "parquet", "xlsx"]
CONTENT_TYPES = {
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".gz": "application/gzip",
    ".zst": "application/zstd",
}
# The format is the server's to tell from the file's name (flights.tsv.gz is TSV, gzip-compressed) unless --format.
EXTENSIONS = {".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".xlsx": "xlsx"}


@click.group("dataset")
def dataset() -> None:
    """Datasets: upload, fetch, list, show, rows, rejects, aggregate, join, query, export, delete."""


def _json_option(value: str | None, name: str) -> Any:
    if value is None:
        return None
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        return json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=name) from None


def _progress(job: dict[str, Any]) -> str:
    progress = job.get("progress") or {}
    message = progress.get("message") or ""
    if not progress.get("total"):
        return f"{job['status']:<9} {message}".rstrip()
    return f"{job['status']:<9} {meter((progress.get('done') or 0) / progress['total'])}  {message}".rstrip()


def wait_for(client: ApiClient, job: dict[str, Any]) -> dict[str, Any]:
    """Follow a job to its end with a progress line and return its result; an error if it did not succeed."""
    job = follow(client, job, _progress, interval=0.5)
    if job["status"] != "succeeded":
        error = job.get("error") or {}
        raise click.ClickException(f"job {job['id']} {job['status']}: {error.get('type')}: {error.get('message')}")
    data: dict[str, Any] = client.request("GET", f"/v1/jobs/{job['id']}/result")["data"]
    return data


@dataset.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="Dataset name (default: the file name).")
@click.option("--format", "format_", type=click.Choice(FORMATS), help="Default: from the file's name (.csv.gz too).")
@click.option("--schema", help='Columns as JSON, e.g. \'{"id": "integer"}\', or @file.json (default: inferred).')
@click.option("--options", help='Reading options as JSON, e.g. \'{"delimiter": ";"}\', or @file.json.')
@click.option("--into", "into", help="Load into this existing dataset instead of creating one.")
@click.option("--mode", type=click.Choice(["append", "replace"]), default="append", show_default=True,
              help="With --into.")  # fmt: skip
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Follow the ingest to its end, then show the schema and the rejects.")  # fmt: skip
@api_option
def upload(path: Path, name: str | None, format_: str | None, schema: str | None, options: str | None,
           into: str | None, mode: str, wait: bool, api: str | None) -> None:  # fmt: skip
    """Upload PATH (CSV, TSV, JSON Lines, Parquet or Excel; gzip or zstd too), streamed with a progress bar; prints
    the dataset id, then follows the ingest and shows the schema and the rejects."""
    params: dict[str, str] = {"filename": path.name}
    if format_:
        params["format"] = format_
    if into:
        params["mode"] = mode
    else:
        params["name"] = name or _stem(path)
        if schema:
            params["schema"] = json.dumps(_json_option(schema, "--schema"))
    if options:
        params["options"] = json.dumps(_json_option(options, "--options"))
    client = client_for(api)
    target = f"/v1/datasets/{into}/ingest" if into else "/v1/datasets"
    size = path.stat().st_size
    headers = {"Content-Type": _content_type(path, format_), "Content-Length": str(size)}
    with open(path, "rb") as file:
        body = UploadProgress(file, size, path.name)
        try:
            accepted = call_api(lambda: client.request("POST", f"{target}?{urlencode(params)}", headers=headers,
                                                       raw=body))  # fmt: skip
        finally:
            body.done()
    click.echo(accepted["dataset"]["id"])
    if wait:
        _report(client, accepted)


def _stem(path: Path) -> str:
    """flights.csv.gz → flights."""
    stem = path.name.removesuffix(".gz").removesuffix(".zst")
    return Path(stem).stem or stem


def _content_type(path: Path, format_: str | None) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".zst"):
        return CONTENT_TYPES[suffixes[-1]]
    return CONTENT_TYPES[format_ or EXTENSIONS.get(suffixes[-1] if suffixes else "", "csv")]


def _report(client: ApiClient, accepted: dict[str, Any]) -> None:
    """Follow the ingest, then show (on stderr; stdout has the id) what it loaded, the schema and the rejects."""
    result = call_api(lambda: wait_for(client, accepted["job"]))
    dataset_id = accepted["dataset"]["id"]
    dataset = call_api(lambda: client.request("GET", f"/v1/datasets/{dataset_id}"))
    click.echo(f"version {result['version']}: {result['rows_loaded']:,} rows loaded, {result['rows_rejected']:,} "
               f"rejected, {result['row_count']:,} in the dataset", err=True)  # fmt: skip
    for change in result.get("schema_changes") or []:
        what = f"added ({change['added']})" if "added" in change else f"{change['from']} → {change['to']}"
        where = f" at line {change['line']} ({change['value']!r})" if "line" in change else ""
        click.echo(f"schema: {change['column']} {what}{where}", err=True)
    click.echo(_table(["column", "type", "nullable", "read as null"],
                      [[c["name"], c["type"], "yes" if c["nullable"] else "no", _markers(c.get("null_values"))]
                       for c in dataset["columns"] or []]), err=True)  # fmt: skip
    if result["rows_rejected"]:
        page = call_api(lambda: client.request("GET", f"/v1/datasets/{dataset_id}/rejects?limit=10"))
        click.echo(f"rejected rows (the first {len(page['items'])} of {result['rows_rejected']:,}; conveyor "
                   f"dataset rejects {dataset_id}):", err=True)  # fmt: skip
        click.echo(_table(["line", "column", "reason", "value"],
                          [[str(r["line"]), r["column"] or "-", r["reason"], (r["value"] or "")[:40]]
                           for r in page["items"]]), err=True)  # fmt: skip


def _markers(values: list[str] | None) -> str:
    if not values:
        return "-"
    first = [m for m in ("", "NA", "NaN", "NULL", "\\N", "#N/A") if m in values]  # the ones tools write most
    ordered = first + [v for v in values if v not in first]
    shown = ", ".join(repr(v) if v == "" else v for v in ordered[:6])
    return shown + (f", … ({len(values)} in all)" if len(values) > 6 else "")


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=False)).rstrip()
                     for line in lines)  # fmt: skip


@dataset.command()
@click.argument("url")
@click.option("--name", help="Dataset name (default: the URL's file name).")
@click.option("--format", "format_", type=click.Choice(FORMATS), help="Default: from the URL's file name.")
@click.option("--options", help="Reading options as JSON, or @file.json.")
@click.option("--into", "into", help="Load into this existing dataset instead of creating one.")
@click.option("--mode", type=click.Choice(["append", "replace"]), default="append", show_default=True,
              help="With --into.")  # fmt: skip
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow the ingest to its end.")
@api_option
def fetch(url: str, name: str | None, format_: str | None, options: str | None, into: str | None, mode: str,
          wait: bool, api: str | None) -> None:  # fmt: skip
    """Have the server fetch the file at URL (http or https) into a dataset; prints the dataset id."""
    body: dict[str, Any] = {"url": url}
    if format_:
        body["format"] = format_
    if options:
        body["options"] = _json_option(options, "--options")
    if into:
        body |= {"dataset_id": into, "mode": mode}
    elif name:
        body["name"] = name
    client = client_for(api)
    accepted = call_api(lambda: client.request("POST", "/v1/datasets:fetch", body))
    click.echo(accepted["dataset"]["id"])
    if wait:
        _report(client, accepted)


@dataset.command("list")
@api_option
def list_(api: str | None) -> None:
    """List datasets."""
    for item in call_api(lambda: client_for(api).request("GET", "/v1/datasets?limit=200"))["items"]:
        click.echo(f"{item['id']}  {item['name']:<30} {item['status']:<8} {item['row_count']:>12,} rows  "
                   f"{item['reject_count']:>8,} rejected")  # fmt: skip


@dataset.command()
@click.argument("dataset_id")
@api_option
def show(dataset_id: str, api: str | None) -> None:
    """A dataset as JSON: schema, counts, source, versions, lineage."""
    click.echo(json.dumps(call_api(lambda: client_for(api).request("GET", f"/v1/datasets/{dataset_id}")), indent=2))


@dataset.command()
@click.argument("dataset_id")
@click.option("--filter", "filters", multiple=True, help="column:op:value (repeatable).")
@click.option("--sort", help="Comma-separated columns, - for descending.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@api_option
def rows(dataset_id: str, filters: tuple[str, ...], sort: str | None, limit: int, api: str | None) -> None:
    """Print rows as JSON Lines."""
    query = urlencode([("limit", limit), *(("filter", f) for f in filters), *((("sort", sort),) if sort else ())])
    page = call_api(lambda: client_for(api).request("GET", f"/v1/datasets/{dataset_id}/rows?{query}"))
    for row in page["items"]:
        click.echo(json.dumps(row))


@dataset.command()
@click.argument("dataset_id")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@api_option
def rejects(dataset_id: str, limit: int, api: str | None) -> None:
    """The rows the ingests refused."""
    page = call_api(lambda: client_for(api).request("GET", f"/v1/datasets/{dataset_id}/rejects?limit={limit}"))
    for item in page["items"]:
        click.echo(f"line {item['line']:>8}  {item['column'] or '-':<20} {item['reason']}  {item['value'] or ''}")


def _submit(client: ApiClient, job_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    job: dict[str, Any] = call_api(lambda: client.request("POST", "/v1/jobs", {"type": job_type, "payload": payload}))
    return job


@dataset.command()
@click.argument("dataset_id")
@click.option("--group-by", help="Comma-separated columns.")
@click.option("--metric", "metrics", multiple=True, required=True, help="op or op:column, e.g. avg:delay, count.")
@click.option("--filter", "filters", multiple=True, help="column:op:value (repeatable).")
@click.option("--bucket", help="column:unit, e.g. dep_time:day (hour, day, week, month).")
@click.option("--name", help="Name of the output dataset.")
@api_option
def aggregate(dataset_id: str, group_by: str | None, metrics: tuple[str, ...], filters: tuple[str, ...],
              bucket: str | None, name: str | None, api: str | None) -> None:  # fmt: skip
    """Aggregate into a new dataset (waits; prints its id)."""
    payload: dict[str, Any] = {
        "dataset_id": dataset_id,
        "group_by": [c.strip() for c in (group_by or "").split(",") if c.strip()],
        "metrics": [dict(zip(("op", "column"), m.split(":", 1), strict=False)) for m in metrics],
        "filters": [_filter(f) for f in filters],
    }
    if bucket:
        column, _, unit = bucket.rpartition(":")
        payload["time_bucket"] = {"column": column, "unit": unit}
    if name:
        payload["name"] = name
    client = client_for(api)
    result = call_api(lambda: wait_for(client, _submit(client, "dataset_aggregate", payload)))
    click.echo(result["dataset_id"])


@dataset.command()
@click.argument("left_id")
@click.argument("right_id")
@click.option("--on", "keys", multiple=True, required=True,
              help="A key: a column both sides have, or left_column=right_column (repeatable).")  # fmt: skip
@click.option("--how", type=click.Choice(["inner", "left"]), default="inner", show_default=True)
@click.option("--left-columns", help="Comma-separated columns of the left to keep (default: all).")
@click.option("--right-columns", help="Comma-separated columns of the right to keep (default: all but shared keys).")
@click.option("--suffix", default="_right", show_default=True, help="Added to a right column whose name is taken.")
@click.option("--name", help="Name of the output dataset.")
@api_option
def join(left_id: str, right_id: str, keys: tuple[str, ...], how: str, left_columns: str | None,
         right_columns: str | None, suffix: str, name: str | None, api: str | None) -> None:  # fmt: skip
    """Join two datasets into a new one (waits; prints its id)."""
    payload: dict[str, Any] = {
        "left": {"dataset_id": left_id, **({"columns": _names(left_columns)} if left_columns else {})},
        "right": {"dataset_id": right_id, "suffix": suffix,
                  **({"columns": _names(right_columns)} if right_columns else {})},
        "on": [key if "=" not in key else dict(zip(("left", "right"), key.split("=", 1), strict=True))
               for key in keys],
        "how": how,
    }  # fmt: skip
    _derive(api, "dataset_join", payload, name)


@dataset.command()
@click.argument("dataset_id")
@click.option("--select", "selected", multiple=True,
              help="An output column: a column's name, or name=expression, e.g. 'hours=dep_delay / 60' "
              "(repeatable; default: every column).")  # fmt: skip
@click.option("--where", help="Keep the rows where this is true, e.g. \"origin == 'JFK' and dep_delay > 15\".")
@click.option("--name", help="Name of the output dataset.")
@api_option
def query(dataset_id: str, selected: tuple[str, ...], where: str | None, name: str | None, api: str | None) -> None:
    """Select, derive and filter columns into a new dataset (waits; prints its id)."""
    payload: dict[str, Any] = {"dataset_id": dataset_id}
    if selected:
        payload["select"] = [item.strip() if "=" not in item or _comparison(item) else
                             dict(zip(("name", "expr"), (p.strip() for p in item.split("=", 1)), strict=True))
                             for item in selected]  # fmt: skip
    if where:
        payload["where"] = where
    _derive(api, "dataset_query", payload, name)


def _comparison(item: str) -> bool:
    """`a == b` or `a <= b` is an expression, not name=expression."""
    head = item.split("=", 1)[0]
    return head.endswith(("<", ">", "!", "=")) or item.split("=", 1)[1].startswith("=")


def _names(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _derive(api: str | None, job_type: str, payload: dict[str, Any], name: str | None) -> None:
    if name:
        payload["name"] = name
    client = client_for(api)
    result = call_api(lambda: wait_for(client, _submit(client, job_type, payload)))
    click.echo(f"{result['row_count']:,} rows", err=True)
    click.echo(result["dataset_id"])


def _filter(text: str) -> dict[str, Any]:
    column, _, rest = text.partition(":")
    op, has_value, value = rest.partition(":")
    return {"column": column, "op": op, **({"value": value} if has_value else {})}


@dataset.command()
@click.argument("dataset_id")
@click.option("--format", "format_", type=click.Choice(["csv", "jsonl", "parquet"]), default="csv", show_default=True)
@click.option("--columns", help="Comma-separated columns (default: all).")
@click.option("--filter", "filters", multiple=True, help="column:op:value (repeatable).")
@click.option("--sort", help="Comma-separated columns, - for descending.")
@click.option("--output", "-o", required=True, help="Where to write the file (- for stdout).")
@api_option
def export(dataset_id: str, format_: str, columns: str | None, filters: tuple[str, ...], sort: str | None,
           output: str, api: str | None) -> None:  # fmt: skip
    """Export to a file: runs a dataset_export job, then downloads its result."""
    payload: dict[str, Any] = {"dataset_id": dataset_id, "format": format_, "filters": [_filter(f) for f in filters],
                               "sort": [s.strip() for s in (sort or "").split(",") if s.strip()]}  # fmt: skip
    if columns:
        payload["columns"] = [c.strip() for c in columns.split(",")]
    client = client_for(api)
    result = call_api(lambda: wait_for(client, _submit(client, "dataset_export", payload)))
    target = "/dev/stdout" if output == "-" else output
    size = call_api(lambda: download(client, result["url"], target))
    click.echo(f"{result['rows']} rows, {size} bytes → {output}", err=True)
    if output != "-" and size != result["size"]:
        sys.exit(1)


@dataset.command()
@click.argument("dataset_id")
@api_option
def delete(dataset_id: str, api: str | None) -> None:
    """Delete a dataset, its table, rejects and files."""
    call_api(lambda: client_for(api).request("DELETE", f"/v1/datasets/{dataset_id}"))
    click.echo(f"deleted {dataset_id}")
