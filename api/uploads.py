"""Receiving a dataset upload: a multipart `file` part or a raw streamed body, spooled to DATA_DIR as it arrives,
with its options from the form or the query string."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath as Path
from typing import Any

from flask import request
from pydantic import ValidationError
from werkzeug.http import parse_options_header

from api.auth import tenant
from api.extension import conveyor, db
from api.jsonio import SPOOL_FACTORY
from core.datasets.files import FileInfo, SpoolFile, spool_stream
from core.datasets.formats import FORMATS, FileOptions, Format
from core.errors import ConveyorError
from core.quotas import check_dataset_bytes

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# A raw body's Content-Type, and the format it names (None: a compressed file, whose name or `format` tells).
RAW_TYPES: dict[str, Format | None] = {
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/vnd.apache.parquet": "parquet",
    XLSX: "xlsx",
    "application/gzip": None,
    "application/zstd": None,
}
EXTENSIONS: dict[str, Format] = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                                 ".parquet": "parquet", ".xlsx": "xlsx"}  # fmt: skip
COMPRESSED = (".gz", ".gzip", ".zst", ".zstd")  # read through (flights.csv.gz is a CSV file); Content-Encoding too
UNNAMED = "upload"  # the file name of an upload that names none
FLAT_OPTIONS = ("delimiter", "quote_char", "header", "encoding", "max_rejects", "sheet")


class UploadInvalid(ConveyorError):
    slug, status, title = "validation-error", 422, "Request validation failed"


class UnsupportedUpload(ConveyorError):
    slug, status, title = "unsupported-media-type", 415, "Unsupported media type"


@dataclass
class Upload:
    spooled: SpoolFile
    info: FileInfo
    format: Format
    options: FileOptions
    params: dict[str, Any]  # the other fields: name, schema, mode


def receive_upload() -> Upload:
    """Spool the request's file and read its parameters. The caller discards `spooled` if it refuses the upload."""
    settings = conveyor().settings
    request.max_content_length = settings.max_upload_bytes
    data_dir, limit = settings.data_dir.resolve(), settings.max_upload_bytes
    if request.mimetype == "multipart/form-data":
        spools: list[SpoolFile] = []

        def factory() -> SpoolFile:
            spools.append(SpoolFile(data_dir, limit))
            return spools[-1]

        request.environ[SPOOL_FACTORY] = factory
        try:
            part = request.files.get("file")
        except BaseException:
            for spool in spools:
                spool.discard()
            raise
        chosen: object = part.stream if part is not None else None
        for spool in spools:
            if spool is not chosen:
                spool.discard()  # stray file parts
        if part is None or not isinstance(part.stream, SpoolFile):
            raise UploadInvalid("Send the file as a multipart part named `file`.",
                                errors=[{"field": "file", "message": "missing"}])  # fmt: skip
        part.stream.close()
        params = {key: request.form[key] for key in request.form}
        info = FileInfo(part.filename or UNNAMED, part.mimetype or "application/octet-stream")
        spooled = part.stream
    elif request.mimetype in RAW_TYPES:
        # the body is the file: one past the tenant's quota is refused before a byte of it is spooled
        check_dataset_bytes(db(), tenant(), request.content_length or 0, settings.quota_dataset_bytes)
        spooled = spool_stream(request.stream, data_dir, limit)  # type: ignore[arg-type]
        params = {key: request.args[key] for key in request.args}
        info = FileInfo(raw_filename(params), request.mimetype)
    else:
        raise UnsupportedUpload(
            f"Upload a file as multipart/form-data (part `file`) or as a raw body with Content-Type "
            f"{', '.join(RAW_TYPES)} (got {request.mimetype or 'none'})."
        )
    try:
        return Upload(spooled, info, format_of(params, info), _options(params), params)
    except BaseException:
        spooled.discard()
        raise


def raw_filename(params: dict[str, Any]) -> str:
    """A raw body's file name: the `filename` query parameter, else Content-Disposition's (RFC 6266, as
    `curl -H 'Content-Disposition: attachment; filename="flights.csv"'` sends it), else UNNAMED."""
    if params.get("filename"):
        return str(params["filename"])
    _disposition, options = parse_options_header(request.headers.get("Content-Disposition", ""))
    return Path(options.get("filename") or UNNAMED).name or UNNAMED  # a name, never a path


@contextmanager
def kept_only_if_accepted(upload: Upload) -> Iterator[None]:
    """A refused upload leaves nothing: not its rows (rolled back), not its spooled file."""
    try:
        yield
    except BaseException:
        db().rollback()
        upload.spooled.discard()
        raise


def format_of(params: dict[str, Any], info: FileInfo) -> Format:
    """The `format` parameter, else the file name's extension (under a .gz or .zst one), else what the Content-Type
    names, else csv. A compressed file is known by its first bytes when it is read, whatever its name."""
    named = params.get("format")
    if named is not None:
        if named not in FORMATS:
            raise UploadInvalid(f"Unknown format {named!r}: {', '.join(FORMATS)}.",
                                errors=[{"field": "format", "message": ", ".join(FORMATS)}])  # fmt: skip
        return named  # type: ignore[no-any-return]
    name = info.filename.lower()
    for suffix in COMPRESSED:
        name = name.removesuffix(suffix)
    for extension, format in EXTENSIONS.items():
        if name.endswith(extension):
            return format
    return RAW_TYPES.get(info.content_type) or "csv"


def json_param(params: dict[str, Any], name: str) -> Any:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise UploadInvalid(f"`{name}` must be JSON: {exc}", errors=[{"field": name, "message": "not JSON"}]) from None


def _options(params: dict[str, Any]) -> FileOptions:
    options = json_param(params, "options") or {}
    if not isinstance(options, dict):
        raise UploadInvalid(
            "`options` must be a JSON object.", errors=[{"field": "options", "message": "not an object"}]
        )
    options |= {key: params[key] for key in FLAT_OPTIONS if key in params}
    if str(params.get("sheet", "")).isdigit():  # ?sheet=1 is a position (options.sheet says which it is in JSON)
        options["sheet"] = int(params["sheet"])
    if "header" in options and isinstance(options["header"], str):
        options["header"] = options["header"].lower() not in ("false", "0", "no")
    try:
        parsed = FileOptions.model_validate(options)
    except ValidationError as exc:
        errors = [{"field": "options." + ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()]
        raise UploadInvalid("The file options are invalid; see errors.", errors=errors) from None
    parsed.check_encoding()
    return parsed
