"""/v1/files/{id}: download an export (or an upload), streamed, with Content-Length, ETag and Range support."""

from __future__ import annotations

import uuid
from typing import Any

from apiflask import APIBlueprint
from flask import send_file

from api.auth import requires, tenant
from api.extension import conveyor, db
from core.datasets.files import FileNotFound, get_file, path_of
from core.keys import Scope

bp = APIBlueprint("files", __name__, url_prefix="/v1/files", tag="Files")


@bp.get("/<file_id>")
@requires(Scope.DATASETS_READ)
@bp.doc(
    summary="Download a file (send If-None-Match with its ETag to skip an unchanged one)",
    responses={200: "The file", 304: "Not modified", 404: "No such file"},
)
def download(file_id: str) -> Any:
    return send_stored(file_id, tenant())


def send_stored(file_id: str, tenant_id: str) -> Any:
    """The tenant's file as a download (the API's and the console's)."""
    try:
        stored = get_file(db(), uuid.UUID(file_id), tenant_id=tenant_id)
    except ValueError:
        raise FileNotFound(f"No file with id {file_id!r} (file ids are UUIDs).") from None
    path = path_of(conveyor().settings.data_dir.resolve(), stored)
    if not path.exists():
        raise FileNotFound(f"File {file_id} is recorded but gone from DATA_DIR; export it again.")
    response = send_file(path, mimetype=stored.content_type, as_attachment=True, download_name=stored.filename,
                         etag=stored.sha256, conditional=True, max_age=0)  # fmt: skip
    response.headers["Cache-Control"] = "no-cache"
    return response
