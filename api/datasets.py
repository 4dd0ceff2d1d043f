"""/v1/datasets: upload a file as a dataset (an ingest job) or have one fetched from a URL (/v1/datasets:fetch: the
API checks the URL against the SSRF guard, the `dataset_ingest` job fetches it through it), read it (schema,
versions, rows, rejects), delete it."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import request, url_for

from api.auth import audit, principal, requires, tenant
from api.extension import conveyor, db, publish_job
from api.request_log import request_id
from api.schemas import (
    DatasetAccepted,
    DatasetFetch,
    DatasetList,
    DatasetListQuery,
    DatasetRead,
    DatasetVersionRead,
    JobRead,
    LineageNode,
    LineageRead,
    RejectPage,
    RejectRead,
    RowsPage,
    RowsQuery,
)
from api.uploads import (
    UNNAMED,
    Upload,
    UploadInvalid,
    format_of,
    json_param,
    kept_only_if_accepted,
    receive_upload,
)
from core.datasets.evolution import SchemaMode, plan_columns
from core.datasets.fetch import url_filename, url_guard
from core.datasets.files import FileInfo, record_file
from core.datasets.formats import check_file
from core.datasets.lineage import Lineage, lineage_of
from core.datasets.query import parse_filter
from core.datasets.schema import parse_schema
from core.datasets.store import (
    DatasetNotFound,
    columns_of,
    delete_dataset,
    free_name,
    get_dataset,
    list_datasets,
    list_rejects,
    new_dataset,
    read_rows,
    versions_of,
)
from core.keys import Scope
from core.models import Dataset, Job
from core.quotas import check_dataset_bytes
from core.submit import JobRequest, submit_job

bp = APIBlueprint("datasets", __name__, url_prefix="/v1", tag="Datasets")

UPLOAD_DOC = (
    "Send the file as `multipart/form-data` (part `file`, optional parts `name`, `format`, `options` and `schema` as "
    "JSON) or as the raw body (`Content-Type: text/csv`, `text/tab-separated-values`, `application/x-ndjson`, "
    "`application/vnd.apache.parquet`, the .xlsx type, or `application/gzip` / `application/zstd` with a file name) "
    "with the same fields as query parameters. Formats: csv, tsv, jsonl, parquet, xlsx (`options.sheet`); a CSV, TSV "
    "or JSON Lines file may be gzip- or zstd-compressed (by name, `Content-Encoding`, or as sent: its first bytes "
    "tell). The file is streamed to disk (limit CONVEYOR_MAX_UPLOAD_BYTES) and "
    "loaded by a `dataset_ingest` job; with `ingest=false` it is only kept, for a workflow's `dataset_ingest` step "
    "to load (its `file_id` is in the answer)."
)
UPLOAD_ERRORS = {
    413: "Larger than CONVEYOR_MAX_UPLOAD_BYTES, or than what is left of the tenant's CONVEYOR_QUOTA_DATASET_BYTES",
    429: "The tenant has CONVEYOR_QUOTA_ACTIVE_JOBS unfinished jobs already",
    415: "Neither multipart nor a supported file type",
    422: "Empty or unreadable file, invalid options or schema, columns missing from the file",
}


def parse_dataset_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise DatasetNotFound(f"No dataset with id {raw!r} (dataset ids are UUIDs).") from None


def dataset_read(dataset: Dataset, *, with_versions: bool = False) -> DatasetRead:
    read = DatasetRead.model_validate(dataset)
    if with_versions:
        read.versions = [
            DatasetVersionRead.model_validate(v, from_attributes=True) for v in versions_of(db(), dataset.id)
        ]
        read.lineage = lineage_read(lineage_of(db(), dataset))
    return read


def lineage_read(lineage: Lineage) -> LineageRead:
    graph = [LineageNode.model_validate(node) for node in lineage.nodes]
    current = graph[0]
    return LineageRead(operation=current.operation, job_id=current.job_id, inputs=current.inputs, graph=graph,
                       truncated=lineage.truncated)  # fmt: skip


def schema_mode_of(raw: object) -> SchemaMode:
    """The `schema` of a load into a dataset that exists: evolve (default) or strict; a schema is set at create."""
    if raw is None or raw in ("evolve", "strict"):
        return "strict" if raw == "strict" else "evolve"
    raise UploadInvalid("A dataset's schema is set when it is created; here `schema` is only `evolve` (new columns "
                        "are added, the default) or `strict` (a file with new columns is refused).",
                        errors=[{"field": "schema", "message": "evolve or strict"}])  # fmt: skip


def _accept(upload: Upload, dataset: Dataset, mode: str, schema_mode: SchemaMode = "evolve") -> Any:
    """Record the file and submit its ingest (unless `ingest=false`) in one transaction; publish after commit."""
    ext, session = conveyor(), db()
    ingest = _ingest_now(upload)
    check_dataset_bytes(session, dataset.tenant_id, upload.spooled.size, ext.settings.quota_dataset_bytes)
    stored = record_file(session, upload.spooled, upload.info, kind="upload", tenant_id=dataset.tenant_id)
    stored.dataset_id = dataset.id
    session.flush()  # the ingest's check reads the file's row
    job = None
    if ingest:
        job = submit_ingest(dataset, {"file_id": str(stored.id), "format": upload.format, "mode": mode,
                                      "options": upload.options.model_dump(), "schema_mode": schema_mode})  # fmt: skip
    audit(f"dataset.{mode}", "dataset", dataset.id, {"job_id": str(job.id) if job else None, "file_id": str(stored.id)})
    session.commit()
    if job is not None:
        publish_job(job)
    return accepted(dataset, job, file_id=stored.id)


def submit_ingest(dataset: Dataset, payload: dict[str, Any]) -> Job:
    """The dataset's `dataset_ingest` job, in the request's transaction (published after commit by the caller)."""
    ext = conveyor()
    request = JobRequest(type="dataset_ingest", payload={"dataset_id": str(dataset.id), **payload},
                         tenant_id=dataset.tenant_id, actor=principal().key_id, request_id=request_id())  # fmt: skip
    job, _ = submit_job(db(), registry=ext.registry, known_queues=ext.settings.queues, request=request,
                        active_jobs_limit=ext.settings.quota_active_jobs)  # fmt: skip
    dataset.last_job_id = job.id
    return job


def accepted(dataset: Dataset, job: Job | None, *, file_id: uuid.UUID | None) -> Any:
    body = DatasetAccepted(dataset=dataset_read(dataset), file_id=file_id, job=JobRead.of(job) if job else None)
    return body, 202, {"Location": url_for("datasets.get_one", dataset_id=str(dataset.id))}


def _ingest_now(upload: Upload) -> bool:
    raw = str(upload.params.get("ingest", "true")).lower()
    if raw not in ("true", "false"):
        raise UploadInvalid("`ingest` is true or false.", errors=[{"field": "ingest", "message": raw}])
    return raw == "true"


@bp.post("/datasets")
@requires(Scope.DATASETS_WRITE)
@bp.output(DatasetAccepted, status_code=202, description="Accepted: the dataset and its ingest job.")
@bp.doc(
    summary="Create a dataset from an uploaded file",
    description=UPLOAD_DOC + " Names are unique per tenant (default: the file's name).",
    responses={**UPLOAD_ERRORS, 409: "The tenant has a dataset of this name (the problem's `dataset_id` names it)"},
)
def create() -> Any:
    upload = receive_upload()
    with kept_only_if_accepted(upload):
        raw_schema = json_param(upload.params, "schema")
        columns = parse_schema(raw_schema) if raw_schema is not None else None
        check_file(upload.spooled.path, upload.format, upload.options, columns)
        if upload.params.get("name") or upload.info.filename != UNNAMED:  # a name taken is a 409 naming its dataset
            name = str(upload.params.get("name") or upload.info.filename)[:200]
        else:  # nothing named it: `upload`, `upload (2)`, …
            name = free_name(db(), UNNAMED, tenant_id=tenant())
        dataset = new_dataset(db(), name=name, columns=columns, tenant_id=tenant())
        return _accept(upload, dataset, "replace")


@bp.post("/datasets/<dataset_id>/ingest")
@requires(Scope.DATASETS_WRITE)
@bp.output(DatasetAccepted, status_code=202, description="Accepted: the dataset and its ingest job.")
@bp.doc(
    summary="Load another file into a dataset (`mode`: replace or append)",
    description=UPLOAD_DOC + " The file may evolve the dataset's schema: a new column is added (nullable; `schema="
    "strict` refuses it instead), a nullable column the file lacks is filled with nulls, and in an inferred schema "
    "a lossless widening (integer → float, date → timestamp) is made; any other change of type is a 422 naming "
    "the column and both types. Each change is in the version's `schema_changes`.",
    responses={404: "No such dataset", **UPLOAD_ERRORS},
)
def ingest(dataset_id: str) -> Any:
    dataset = get_dataset(db(), parse_dataset_id(dataset_id), tenant_id=tenant())
    upload = receive_upload()
    with kept_only_if_accepted(upload):
        mode = upload.params.get("mode", "append")
        if mode not in ("append", "replace"):
            raise UploadInvalid("`mode` is append or replace.", errors=[{"field": "mode", "message": mode}])
        schema_mode = schema_mode_of(upload.params.get("schema"))
        # a file that does not fit the dataset is refused now, not by its job
        plan_columns(columns_of(dataset) or None, has_data=dataset.version > 0, inferred=dataset.schema_inferred,
                     path=upload.spooled.path, format=upload.format, options=upload.options,
                     schema_mode=schema_mode)  # fmt: skip
        return _accept(upload, dataset, mode, schema_mode)


@bp.get("/datasets")
@requires(Scope.DATASETS_READ)
@bp.input(DatasetListQuery, location="query", arg_name="query")
@bp.output(DatasetList)
@bp.doc(summary="List datasets, newest first")
def list_all(query: DatasetListQuery) -> Any:
    found = list_datasets(db(), limit=query.limit, offset=query.offset, tenant_id=tenant())
    return DatasetList(items=[dataset_read(d) for d in found])


@bp.get("/datasets/<dataset_id>")
@requires(Scope.DATASETS_READ)
@bp.output(DatasetRead)
@bp.doc(
    summary="Read a dataset: schema, counts, source, status, versions and lineage",
    description="`lineage` names the job that made the current version and the datasets and versions it read, and "
    "holds the whole upstream graph back to the files and URLs ingested.",
    responses={404: "No such dataset"},
)
def get_one(dataset_id: str) -> Any:
    return dataset_read(get_dataset(db(), parse_dataset_id(dataset_id), tenant_id=tenant()), with_versions=True)


@bp.get("/datasets/<dataset_id>/rows")
@requires(Scope.DATASETS_READ)
@bp.input(RowsQuery, location="query", arg_name="query")
@bp.output(RowsPage)
@bp.doc(
    summary="Rows, filtered and sorted (e.g. ?filter=origin:eq:JFK&sort=-dep_delay)",
    responses={400: "Unknown column, operator or a value of the wrong type", 404: "No such dataset",
               409: "No data yet"},
)  # fmt: skip
def rows(dataset_id: str, query: RowsQuery) -> Any:
    dataset = get_dataset(db(), parse_dataset_id(dataset_id), tenant_id=tenant())
    sort = [key.strip() for key in (query.sort or "").split(",") if key.strip()]
    items = read_rows(db(), dataset, limit=query.limit, offset=query.offset,
                      filters=[parse_filter(f) for f in request.args.getlist("filter")], sort=sort)  # fmt: skip
    return RowsPage(items=items, limit=query.limit, offset=query.offset)


@bp.get("/datasets/<dataset_id>/rejects")
@requires(Scope.DATASETS_READ)
@bp.input(DatasetListQuery, location="query", arg_name="query")
@bp.output(RejectPage)
@bp.doc(summary="Rows the ingests refused: line, column, value and reason", responses={404: "No such dataset"})
def rejects(dataset_id: str, query: DatasetListQuery) -> Any:
    dataset = get_dataset(db(), parse_dataset_id(dataset_id), tenant_id=tenant())
    items = [RejectRead.model_validate(r) for r in list_rejects(db(), dataset, limit=query.limit, offset=query.offset)]
    return RejectPage(items=items, limit=query.limit, offset=query.offset)


@bp.delete("/datasets/<dataset_id>")
@requires(Scope.DATASETS_WRITE)
@bp.output({}, status_code=204)
@bp.doc(summary="Delete a dataset, its table, rejects and files", responses={404: "No such dataset"})
def delete(dataset_id: str) -> Any:
    session = db()
    dataset = get_dataset(session, parse_dataset_id(dataset_id), tenant_id=tenant())
    paths = delete_dataset(session, dataset, conveyor().settings.data_dir.resolve())
    audit("dataset.deleted", "dataset", dataset.id, {"name": dataset.name})
    session.commit()
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return ""


@bp.post("/datasets:fetch")
@requires(Scope.DATASETS_WRITE)
@bp.input(DatasetFetch, arg_name="body")
@bp.output(DatasetAccepted, status_code=202, description="Accepted: the dataset and the job that fetches and loads it.")
@bp.doc(
    summary="Create a dataset from a file at a URL (or load one into a dataset with `dataset_id`)",
    description="The URL must be http(s) and reach a public address (or one CONVEYOR_INGEST_URL_ALLOW names); the "
    "worker fetches it without following redirects, up to CONVEYOR_MAX_UPLOAD_BYTES. Formats and options as an "
    "upload's; the format defaults from the URL's file name.",
    responses={
        404: "No such dataset (`dataset_id`)",
        409: "The tenant has a dataset of this name (the problem's `dataset_id` names it)",
        422: "A URL the SSRF guard refuses, invalid options or schema, `schema` or `mode` where they do not apply",
        429: "The tenant has CONVEYOR_QUOTA_ACTIVE_JOBS unfinished jobs already",
    },
)
def fetch(body: DatasetFetch) -> Any:
    filename = url_filename(body.url)
    format = body.format or format_of({}, FileInfo(filename, ""))
    if body.dataset_id is not None:
        dataset = get_dataset(db(), body.dataset_id, tenant_id=tenant())  # another tenant's: 404, as a missing one
        if body.name is not None:
            raise UploadInvalid("A dataset's name is set when it is created; leave `name` out with `dataset_id`.",
                                errors=[{"field": "name", "message": "not allowed"}])  # fmt: skip
        schema_mode = schema_mode_of(body.schema_)
        url_guard(conveyor().settings).check(body.url)
        mode = body.mode
    else:
        if "mode" in body.model_fields_set:
            raise UploadInvalid("`mode` applies to a dataset that exists (`dataset_id`).",
                                errors=[{"field": "mode", "message": "not allowed here"}])  # fmt: skip
        columns = parse_schema(body.schema_) if body.schema_ is not None else None
        url_guard(conveyor().settings).check(body.url)  # UrlRefused: 422, before anything is created
        name = body.name or (filename if filename != "download" else free_name(db(), UNNAMED, tenant_id=tenant()))
        dataset = new_dataset(db(), name=name, columns=columns, tenant_id=tenant())
        mode, schema_mode = "replace", "evolve"
    job = submit_ingest(dataset, {"url": body.url, "format": format, "options": body.options.model_dump(),
                                  "mode": mode, "schema_mode": schema_mode})  # fmt: skip
    audit(f"dataset.{mode}", "dataset", dataset.id, {"job_id": str(job.id), "url": body.url})
    db().commit()
    publish_job(job)
    return accepted(dataset, job, file_id=None)
