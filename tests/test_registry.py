"""The job-type contract: every registered spec has one handler with typed payload/result models."""

from __future__ import annotations

import inspect

import pytest
from pydantic import BaseModel

from core.queue_names import QueueNames
from core.registry import DuplicateJobType, Registry, UnknownJobType, load_registry


def test_builtins_register_through_entry_points() -> None:
    assert {"echo", "sleep", "fail"} <= {spec.name for spec in load_registry()}


@pytest.mark.parametrize("spec", list(load_registry()), ids=lambda s: s.name)
def test_every_spec_has_exactly_one_typed_handler(spec) -> None:  # type: ignore[no-untyped-def]
    assert callable(spec.handler)
    params = list(inspect.signature(spec.handler).parameters)
    assert len(params) == 2, "a handler takes (payload, ctx)"
    assert issubclass(spec.payload, BaseModel) and issubclass(spec.result, BaseModel)
    assert spec.payload.model_config.get("extra") == "forbid", "payloads reject unknown fields"
    assert spec.queue in QueueNames.all() and spec.max_attempts >= 1
    assert spec.name.isidentifier() and spec.name == spec.name.lower()


def test_second_registration_is_refused() -> None:
    registry = Registry()
    spec = next(iter(load_registry()))
    registry.register(spec)
    with pytest.raises(DuplicateJobType):
        registry.register(spec)
    with pytest.raises(UnknownJobType):
        registry.get("nope")
