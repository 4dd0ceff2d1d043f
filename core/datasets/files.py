"""Files under DATA_DIR/files: uploads spooled straight to disk (never whole in memory) and exports."""

from __future__ import annotations

import hashlib
import io
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session

from core.errors import ConveyorError
from core.models import StoredFile
from core.types import utcnow

FILES_DIR = "files"
CHUNK = 1 << 20


class UploadTooLarge(ConveyorError):
    slug, status, title = "upload-too-large", 413, "Upload too large"


class FileNotFound(ConveyorError):
    slug, status, title = "not-found", 404, "Not found"


class SpoolFile(io.RawIOBase):
    """A new file in DATA_DIR/files that hashes and counts what is written, and refuses to grow past `limit`."""

    def __init__(self, data_dir: Path, limit: int) -> None:
        directory = data_dir / FILES_DIR
        directory.mkdir(parents=True, exist_ok=True)
        self.id = uuid.uuid4()
        self.relative = f"{FILES_DIR}/{self.id.hex}"
        self.path = data_dir / self.relative
        self.limit = limit
        self.size = 0
        self._hash = hashlib.sha256()
        self._file = open(self.path, "w+b")

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.size += len(data)
        if self.size > self.limit:
            self.discard()
            raise UploadTooLarge(f"The upload is larger than CONVEYOR_MAX_UPLOAD_BYTES ({self.limit} bytes).")
        self._hash.update(data)
        return self._file.write(data)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        return self._file.readinto(buffer)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        super().close()

    def discard(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def spool_stream(stream: BinaryIO, data_dir: Path, limit: int) -> SpoolFile:
    """Copy a request body to DATA_DIR/files in 1 MiB chunks."""
    spooled = SpoolFile(data_dir, limit)
    try:
        while chunk := stream.read(CHUNK):
            spooled.write(chunk)
    except BaseException:
        spooled.discard()
        raise
    spooled.close()
    return spooled


@dataclass(frozen=True)
class FileInfo:
    filename: str
    content_type: str


def record_file(
    session: Session, spooled: SpoolFile, info: FileInfo, *, kind: str, tenant_id: str = "default"
) -> StoredFile:
    stored = StoredFile(id=spooled.id, tenant_id=tenant_id, kind=kind, path=spooled.relative,
                        filename=info.filename[:255], content_type=info.content_type[:100], size=spooled.size,
                        sha256=spooled.sha256, created_at=utcnow())  # fmt: skip
    session.add(stored)
    return stored


def get_file(session: Session, file_id: uuid.UUID, *, tenant_id: str = "default") -> StoredFile:
    stored = session.get(StoredFile, file_id)
    if stored is None or stored.tenant_id != tenant_id:
        raise FileNotFound(f"No file with id {file_id}.")
    return stored


def path_of(data_dir: Path, stored: StoredFile) -> Path:
    return data_dir / stored.path
