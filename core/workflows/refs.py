"""The `$ref` expressions of a step's payload: `{"$ref": "steps.ingest.result.dataset_id"}` stands for a value of a
parent's stored result, resolved when the step is released.

    steps.<step>.result(.<field> | [<index>])*   a parent's result (a mapped parent's: the list of its items' results)
    item(.<field> | [<index>])*                  a mapped step's item
    index                                        a mapped step's item's place in its list (0, 1, …)
    batch(.<field>)*                             in a batch's on_complete step: the counts and job ids of the
                                                 succeeded and failed jobs

A dict whose only key is `$ref` is a reference; anything else is a literal. Nothing is evaluated: a path only walks
fields and list positions of JSON the ledger already holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

REF = "$ref"
_SEGMENT = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")
_HEAD = re.compile(r"^steps\.(?P<step>[A-Za-z0-9_-]+)\.result|^(?P<head>item|batch)|^index$")

Location = tuple[str | int, ...]


class RefInvalid(ValueError):
    """A `$ref` that is not an expression of the language."""


class RefMissing(LookupError):
    """A `$ref` whose value is absent when the step is released: its message names the reference."""


@dataclass(frozen=True)
class Ref:
    """A parsed reference: its head (`steps`, `item` or `index`), the step it names, and the path below."""

    text: str
    head: str
    step: str | None
    path: tuple[str | int, ...]


def parse(text: Any) -> Ref:
    if not isinstance(text, str):
        raise RefInvalid("a $ref is a string, e.g. steps.ingest.result.dataset_id")
    head = _HEAD.match(text)
    if head is None:
        raise RefInvalid(f"{text!r} is not a reference: write steps.<step>.result…, item…, index or batch…")
    path: list[str | int] = []
    rest = text[head.end() :]
    while rest:
        segment = _SEGMENT.match(rest)
        if segment is None:
            raise RefInvalid(f"{text!r}: cannot read {rest!r} (use .field or [index])")
        field, index = segment.groups()
        path.append(field if field is not None else int(index))
        rest = rest[segment.end() :]
    if head["step"] is not None:
        return Ref(text, "steps", head["step"], tuple(path))
    return Ref(text, head["head"] or "index", None, tuple(path))


def is_ref(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and REF in value


def find(value: Any, at: Location = ()) -> Iterator[tuple[Location, Ref]]:
    """Every reference in a payload, with where it stands (RefInvalid for a malformed one)."""
    if is_ref(value):
        yield at, parse(value[REF])
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from find(item, (*at, key))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from find(item, (*at, position))


@dataclass(frozen=True)
class Scope:
    """What references resolve against: the parents' results by step name, a mapped step's item, a batch."""

    results: dict[str, Any]
    item: Any = None
    index: int | None = None
    batch: dict[str, Any] | None = None


def resolve(value: Any, scope: Scope) -> Any:
    """The value with every reference replaced (RefMissing names the first that cannot be)."""
    if is_ref(value):
        return evaluate(parse(value[REF]), scope)
    if isinstance(value, dict):
        return {key: resolve(item, scope) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, scope) for item in value]
    return value


def evaluate(ref: Ref, scope: Scope) -> Any:
    if ref.head == "index":
        return scope.index
    if ref.head == "item":
        current, where = scope.item, "the item"
    elif ref.head == "batch":
        current, where = scope.batch, "the batch"
    else:
        assert ref.step is not None  # noqa: S101 - a steps reference names its step
        if ref.step not in scope.results:
            raise RefMissing(f"{ref.text}: step {ref.step!r} has no result")
        current, where = scope.results[ref.step], f"the result of step {ref.step!r}"
    for depth, segment in enumerate(ref.path):
        if isinstance(segment, str) and isinstance(current, dict) and segment in current:
            current = current[segment]
        elif isinstance(segment, int) and isinstance(current, list) and segment < len(current):
            current = current[segment]
        else:
            named = where + "".join(f".{s}" if isinstance(s, str) else f"[{s}]" for s in ref.path[:depth])
            absent = f"no field {segment!r}" if isinstance(segment, str) else f"no item [{segment}]"
            raise RefMissing(f"{ref.text}: {named} has {absent}")
    return current
