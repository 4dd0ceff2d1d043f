"""A small HTTP client of the Conveyor API for the CLI (stdlib only)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import click

from core.settings import Settings

ADMIN_KEY_FILE = "admin.key"  # in DATA_DIR: the admin key `conveyor up` made
api_option = click.option("--api", help="API base URL (default: CONVEYOR_API_URL or the local API).")


def problem_text(body: Any) -> str:
    """An RFC 9457 problem as lines a person reads: the detail, then one `field: message` line per error."""
    if not isinstance(body, dict):
        return str(body)
    lines = [str(body.get("detail") or body.get("title") or "")]
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            lines.append(f"  {error.get('field') or error.get('location') or '-'}: {error.get('message')}")
        else:
            lines.append(f"  {error}")
    return "\n".join(lines)


class ApiError(Exception):
    """An HTTP error answer; its text is the problem document as readable lines."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {problem_text(body)}")
        self.status = status
        self.body = body


class ApiUnreachable(ConnectionError):
    """No answer from the API at all: says where the CLI looked and how to point it elsewhere."""

    def __init__(self, base_url: str, reason: object) -> None:
        super().__init__(
            f"Cannot reach the Conveyor API at {base_url} ({reason}). Is it running (`make up`)? Point the CLI at "
            f"another one with --api URL or CONVEYOR_API_URL."
        )


class ApiClient:
    def __init__(self, base_url: str, timeout: float = 30, key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.auth = {"Authorization": f"Bearer {key}"} if key else {}

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, *, raw: Any = None
    ) -> Any:
        """JSON in and out; `raw` (bytes or a binary file, streamed) is sent as is with the caller's Content-Type."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        all_headers = {"Accept": "application/json", **self.auth, **(headers or {})}
        if data is not None and raw is None:
            all_headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=all_headers)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:  # noqa: S310 - URL from settings
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed: Any = json.loads(raw)
            except ValueError:
                parsed = raw.decode(errors="replace")
            raise ApiError(exc.code, parsed) from None
        except urllib.error.URLError as exc:  # refused, unresolvable, timed out: no HTTP answer
            raise ApiUnreachable(self.base_url, exc.reason) from None
        except TimeoutError as exc:
            raise ApiUnreachable(self.base_url, exc) from None


def call_api(action: Callable[[], Any]) -> Any:
    """Run a CLI command's API call; an HTTP error or an unreachable API becomes the command's error message."""
    try:
        return action()
    except (ApiError, OSError) as exc:  # OSError: ApiUnreachable too
        raise click.ClickException(str(exc)) from None


def api_key(settings: Settings) -> str | None:
    """CONVEYOR_API_KEY, else the admin key `conveyor up` wrote to DATA_DIR/admin.key (a local setup)."""
    if key := os.environ.get("CONVEYOR_API_KEY"):
        return key.strip()
    path = settings.data_dir.resolve() / ADMIN_KEY_FILE
    return path.read_text().strip() if path.exists() else None


def client_for(api: str | None) -> ApiClient:
    """The client of --api, else CONVEYOR_API_URL, else the API `conveyor up` runs; with api_key()."""
    settings = Settings()
    url = api or os.environ.get("CONVEYOR_API_URL") or f"http://{settings.api_host}:{settings.api_port}"
    return ApiClient(url, key=api_key(settings))


def download(client: ApiClient, path: str, target: str) -> int:
    """Stream GET `path` into the file `target`; returns the bytes written."""
    written = 0
    req = urllib.request.Request(client.base_url + path, headers=client.auth)  # noqa: S310 - URL from settings
    with urllib.request.urlopen(req, timeout=client.timeout) as response, open(target, "wb") as out:  # noqa: S310
        while chunk := response.read(1 << 20):
            out.write(chunk)
            written += len(chunk)
    return written
