"""The console's Datasets: each dataset's status and counts, and a dataset's page with its lineage graph, schema
(with the markers read as null), first rows, rejected rows (line, column, value, reason), versions (with their schema
changes), and export buttons whose files download from here."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from api.auth import principal
from api.console.lineage import layout
from api.console.pages import console_blueprint
from api.console.session import signed_in
from api.datasets import parse_dataset_id
from api.extension import db
from api.files import send_stored
from api.jobs import submit_and_publish
from core.datasets.lineage import lineage_of
from core.datasets.store import columns_of, get_dataset, list_datasets, list_rejects, read_rows, versions_of
from core.errors import ConveyorError
from core.keys import Scope
from core.submit import JobRequest
from core.types import utcnow

bp = console_blueprint("console_datasets", "/console/datasets")
FIRST_ROWS = 20
REJECTS_SHOWN = 100
FORMATS = ("csv", "jsonl", "parquet")


class UnknownFormat(ConveyorError):
    slug, status, title = "validation-error", 422, "Unknown export format"


@bp.get("")
@signed_in(Scope.DATASETS_READ)
def list_page() -> Any:
    datasets = list_datasets(db(), limit=200, offset=0, tenant_id=principal().tenant_id)
    return render_template("console/datasets.html", datasets=datasets)


@bp.get("/<dataset_id>")
@signed_in(Scope.DATASETS_READ)
def dataset_page(dataset_id: str) -> Any:
    session = db()
    dataset = get_dataset(session, parse_dataset_id(dataset_id), tenant_id=principal().tenant_id)
    rows = read_rows(session, dataset, limit=FIRST_ROWS, offset=0, filters=[], sort=[]) if dataset.version else []
    rejects = list_rejects(session, dataset, limit=REJECTS_SHOWN, offset=0)
    lineage = lineage_of(session, dataset)
    return render_template("console/dataset.html", dataset=dataset, columns=columns_of(dataset), rows=rows,
                           rejects=rejects, versions=versions_of(session, dataset.id), formats=FORMATS,
                           made_by=lineage.nodes[0], graph=layout(lineage))  # fmt: skip


@bp.post("/<dataset_id>/export")
@signed_in(Scope.JOBS_WRITE)
def export(dataset_id: str) -> Any:
    """A dataset_export job of this dataset; its page links the file once the job succeeded."""
    file_format = request.form.get("format", "")
    if file_format not in FORMATS:
        raise UnknownFormat(f"Export as one of {', '.join(FORMATS)}, not {file_format!r}.")
    dataset = get_dataset(db(), parse_dataset_id(dataset_id), tenant_id=principal().tenant_id)
    export_request = JobRequest(type="dataset_export", payload={"dataset_id": str(dataset.id), "format": file_format},
                                tenant_id=principal().tenant_id, actor=principal().key_id)  # fmt: skip
    [submitted] = submit_and_publish(db(), [export_request], now=utcnow())
    if submitted.error is not None:
        raise submitted.error
    assert submitted.job is not None  # noqa: S101 - an outcome has a job or an error
    flash(f"Exporting {dataset.name} as {file_format}: the file's link appears here when the job has succeeded.")
    return redirect(url_for("console_jobs.job_page", job_id=submitted.job.id))


@bp.get("/files/<file_id>")
@signed_in(Scope.DATASETS_READ)
def download(file_id: str) -> Any:
    return send_stored(file_id, principal().tenant_id)
