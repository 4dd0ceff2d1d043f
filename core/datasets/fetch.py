"""A dataset's file fetched from a URL by the worker: through the SSRF guard (core/outbound.py), streamed to
DATA_DIR/files under CONVEYOR_MAX_UPLOAD_BYTES, as an upload would have been."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from core.datasets.files import FileInfo, SpoolFile
from core.outbound import Guard, download
from core.settings import Settings


def url_guard(settings: Settings) -> Guard:
    """What a dataset's URL may reach: public addresses, and CONVEYOR_INGEST_URL_ALLOW's."""
    return Guard(allow=tuple(settings.ingest_url_allow))


def url_filename(url: str) -> str:
    """The file name a URL ends with (flights.csv.gz), or `download`."""
    return PurePosixPath(unquote(urlsplit(url).path)).name[:255] or "download"


def fetch_file(url: str, settings: Settings, progress: Callable[[int, int], None]) -> tuple[SpoolFile, FileInfo]:
    """Download `url` to a new file in DATA_DIR/files; nothing is left of a download that fails."""
    spooled = SpoolFile(settings.data_dir, settings.max_upload_bytes)
    try:
        got = download(url_guard(settings), url, spooled.write, deadline_seconds=settings.ingest_url_timeout_seconds,
                       progress=progress)  # fmt: skip
    except BaseException:
        spooled.discard()
        raise
    spooled.close()
    return spooled, FileInfo(url_filename(url), got.content_type)
