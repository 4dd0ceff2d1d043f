"""The server secret: the key of the API keys' hash (and of anything else Conveyor signs).

CONVEYOR_SECRET_KEY when set (production: every API process must share it); otherwise DATA_DIR/secret.key, made
once with mode 0600 (the embedded default, where every process shares the data directory).
"""

from __future__ import annotations

import secrets

from core.private_file import write_private
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
    # Processes starting together agree on the first one's secret.
    return bytes.fromhex(write_private(path, secrets.token_hex(32), replace=False))
