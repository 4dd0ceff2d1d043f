"""Secrets on disk (the server secret, `conveyor up`'s admin key and Flower password): owner-only, written whole."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_private(path: Path, text: str, *, replace: bool) -> str:
    """Put `text` in `path`, mode 0600 from the start, drafted beside it so that no reader sees half of it. With
    `replace` the draft is renamed over the file; without, it is linked into place unless a file is there already
    (another process got there first), whose text wins. Returns the text the file holds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")
    if replace:
        draft.replace(path)
        return text
    try:
        os.link(draft, path)
    except FileExistsError:
        return path.read_text().strip()
    finally:
        draft.unlink()
    return text
