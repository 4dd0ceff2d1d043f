"""Payload templating for scheduled jobs, limited to the slot's time: `{"day": "{{ slot_date }}"}`.

Deliberately not a template language: a fixed set of names, substituted into string values only, so a schedule's
payload can say which slot it covers and nothing else can be evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from core.errors import PayloadInvalid

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

# name → how it renders a slot (an aware datetime in the schedule's zone)
VARIABLES: dict[str, Callable[[datetime], str]] = {
    "slot": lambda slot: slot.isoformat(),
    "slot_utc": lambda slot: slot.astimezone(UTC).isoformat(),
    "slot_date": lambda slot: slot.date().isoformat(),
    "slot_time": lambda slot: slot.time().isoformat(),
    "slot_unix": lambda slot: str(int(slot.timestamp())),
    "slot_previous_date": lambda slot: (slot.date() - timedelta(days=1)).isoformat(),
}


def render_payload(payload: dict[str, Any], slot: datetime, timezone: str) -> dict[str, Any]:
    """The payload with every placeholder replaced by the slot's value in the schedule's time zone."""
    local = slot.astimezone(ZoneInfo(timezone))
    rendered = _render(payload, local, ())
    assert isinstance(rendered, dict)  # noqa: S101 - a dict renders to a dict
    return rendered


def _render(value: Any, slot: datetime, path: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda match: _variable(match.group(1), path)(slot), value)
    if isinstance(value, dict):
        return {key: _render(item, slot, (*path, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, slot, (*path, str(index))) for index, item in enumerate(value)]
    return value


def _variable(name: str, path: tuple[str, ...]) -> Callable[[datetime], str]:
    try:
        return VARIABLES[name]
    except KeyError:
        known = ", ".join("{{ %s }}" % v for v in VARIABLES)  # noqa: UP031 - braces would need escaping
        raise PayloadInvalid(
            f"Unknown placeholder {{{{ {name} }}}} in the payload. Known: {known}.",
            errors=[{"field": ".".join(("payload", *path)), "message": f"unknown placeholder {name!r}"}],
        ) from None
