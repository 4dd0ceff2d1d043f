"""The server secret: the key of the API keys' hash (and of anything else Conveyor signs).

CONVEYOR_SECRET_KEY when set (production: every API process must share it); otherwise DATA_DIR/secret.key, made
once with mode 0600 (the embedded default, where every process shares the data directory).
"""

from __future__ import annotations

import os
import secrets

from core.settings import Settings

SECRET_FILE = "secret.key"  # noqa: S105 - the file's name


def server_secret(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    path = settings.data_dir.resolve() / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole to a file of our own, then linked into place: link fails if another process got there first,
    # and a reader never sees a half-written secret.
    value = secrets.token_hex(32)
    draft = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:
        return bytes.fromhex(path.read_text().strip())
    finally:
        draft.unlink()
    return bytes.fromhex(value)
