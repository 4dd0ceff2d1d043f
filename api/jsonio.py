"""Strict JSON in: NaN/Infinity, pathological nesting, NUL characters and lone surrogates are malformed JSON
(400 with the reason), never a 500 from the database that cannot store them."""

from __future__ import annotations

import json
from typing import Any

from flask import Request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class StrictJSONProvider(DefaultJSONProvider):
    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            value = json.loads(s, parse_constant=_reject_constant, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
        if isinstance(s, bytes) and b"\\u0000" not in s and b"\\ud" not in s.lower():
            return value  # no escape that could hide a NUL or a surrogate: the common case costs nothing more
        _check_strings(value)
        return value


def _check_strings(value: Any) -> None:
    """Every string must be storable: no NUL (PostgreSQL text and JSONB refuse it), no lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise ValueError("strings may not contain NUL (\\u0000) characters")
            item.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a lone surrogate such as \ud800


SPOOL_FACTORY = "conveyor.spool_factory"


class JSONRequest(Request):
    def _get_file_stream(
        self, total_content_length: int | None, content_type: str | None, filename: str | None = None,
        content_length: int | None = None,
    ) -> Any:  # fmt: skip
        """Uploads go straight to where they will be kept (see api/uploads.py), not to a temporary file first."""
        factory = self.environ.get(SPOOL_FACTORY)
        if factory is not None:
            return factory()
        return super()._get_file_stream(total_content_length, content_type, filename, content_length)

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if not self.get_data(cache=True):
            return None  # no body at all: the model's own fields say what is missing (422), or it needs none
        reason = f": {e}" if e else ""
        raise BadRequest(f"The body is not valid JSON{reason}. Send a JSON object with Content-Type: application/json.")
