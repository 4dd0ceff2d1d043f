"""What the console's templates call: times relative and absolute, statuses in words and symbols (never colour alone),
JSON shown readably, small bar charts as inline SVG (no chart library, nothing fetched)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from markupsafe import Markup

from core.types import utcnow

# A symbol beside each status's name: the status reads the same without colour (WCAG 1.4.1).
STATUS_SYMBOLS = {
    "scheduled": "◷",
    "queued": "◌",
    "running": "▶",
    "retrying": "↻",
    "succeeded": "✓",
    "failed": "✗",
    "cancelled": "⊘",
    "waiting": "…",
    "skipped": "↷",
    "ready": "✓",
    "pending": "◌",
}
UNITS = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))


def relative(at: datetime, now: datetime | None = None) -> str:
    """'3 min ago', 'in 2 h', 'just now'."""
    seconds = ((now or utcnow()) - at).total_seconds()
    if abs(seconds) < 1:
        return "just now"
    size, unit = next((size, unit) for size, unit in UNITS if abs(seconds) >= size)
    amount = f"{int(abs(seconds) // size)} {unit}"
    return f"{amount} ago" if seconds > 0 else f"in {amount}"


def absolute(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def when(at: datetime | None) -> Markup:
    """A time as both: relative ('3 min ago', written and kept fresh by console.js from `datetime`, so that a live
    fragment's HTML changes only when its data does) and absolute beside it."""
    if at is None:
        return Markup('<span class="muted">—</span>')
    return Markup('<time datetime="{iso}" class="rel">{rel}</time> <span class="abs">{abs}</span>').format(
        iso=at.isoformat(), rel="", abs=absolute(at)
    )


def status(value: str) -> Markup:
    symbol = STATUS_SYMBOLS.get(value, "•")
    return Markup('<span class="status status-{v}"><span aria-hidden="true">{s}</span> {v}</span>').format(
        v=value, s=symbol
    )


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def bars(values: Sequence[int], *, label: str, height: int = 28, css: str = "bars") -> Markup:
    """A bar per value (a minute of the last hour), as an SVG image whose title states the total and the peak."""
    peak = max(values, default=0) or 1
    width = 3 * len(values)
    rects = "".join(
        f'<rect x="{i * 3}" y="{height - max(1, round(v / peak * height)) if v else height}" width="2" '
        f'height="{max(1, round(v / peak * height)) if v else 0}"/>'
        for i, v in enumerate(values)
    )
    title = f"{label}: {sum(values)} in the last hour, at most {max(values, default=0)} a minute"
    return Markup(
        '<svg class="{css}" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        'preserveAspectRatio="none"><title>{title}</title>{rects}</svg>'
    ).format(css=css, width=width, height=height, title=title, rects=Markup(rects))  # noqa: S704 - numbers only


def short_id(value: object) -> str:
    """An id's last 8 characters: random in every id, where a job id's first ones are its creation time (core/ids.py)
    and the same for every job of the same minute."""
    return str(value)[-8:]


TEMPLATE_HELPERS = {
    "short_id": short_id,
    "when": when,
    "status": status,
    "pretty_json": pretty_json,
    "duration": duration,
    "bars": bars,
    "relative": relative,
    "absolute": absolute,
}
