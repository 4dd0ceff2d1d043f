"""Strict JSON parsing: NaN/Infinity and pathological nesting are malformed JSON (400), never a 500."""

from __future__ import annotations

import json
from typing import Any

from flask.json.provider import DefaultJSONProvider


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class StrictJSONProvider(DefaultJSONProvider):
    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return json.loads(s, parse_constant=_reject_constant, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
