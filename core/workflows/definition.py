"""A workflow as submitted (`WorkflowDefinition`, the body of POST /v1/workflows and of a workflow YAML file), and
its validation as a whole: job types, queues, payloads, the DAG (names, parents, cycles) and the `$ref`s."""

from __future__ import annotations

import graphlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import ConveyorError
from core.registry import Registry
from core.workflows import refs

STEP_NAME = r"^[A-Za-z0-9_-]{1,100}$"
MAX_STEPS = 1000


class WorkflowInvalid(ConveyorError):
    slug, status, title = "validation-error", 422, "Request validation failed"


class StepDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=STEP_NAME, description="Unique in the workflow; what `depends_on` and `$ref`s name.")
    type: str = Field(min_length=1, max_length=100, description="A job type from GET /v1/job-types.")
    payload: dict[str, Any] = Field(
        default_factory=dict,
        description='The job\'s payload. A value may be {"$ref": "steps.<parent>.result.<field>"} (a parent\'s '
        'result, resolved when the step is released) or, in a mapped step, {"$ref": "item"} / {"$ref": "index"}.',
    )
    depends_on: list[str] = Field(default_factory=list, max_length=MAX_STEPS, description="Parent step names.")
    map: list[Any] | dict[str, Any] | None = Field(
        default=None,
        description='One job per item of a list: the list itself, or {"$ref": …} to one in a parent\'s result. '
        "A dependant receives the items' results as a list, in order.",
    )
    queue: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    priority: int | None = Field(default=None, ge=0, le=9)
    max_attempts: int | None = Field(default=None, ge=1, le=100)


class OnCompleteDefinition(BaseModel):
    """A batch's callback: one job released once every other step has finished, whatever their outcome."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=100)
    payload: dict[str, Any] = Field(
        default_factory=dict,
        description='A value may be {"$ref": "batch"}: the counts and job ids of the succeeded and failed jobs.',
    )
    queue: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    priority: int | None = Field(default=None, ge=0, le=9)
    max_attempts: int | None = Field(default=None, ge=1, le=100)


class WorkflowDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    steps: list[StepDefinition] = Field(min_length=1, max_length=MAX_STEPS)
    failure_policy: Literal["fail_fast", "continue"] = Field(
        default="fail_fast",
        description="fail_fast: the first failed step cancels every unfinished one. continue: independent branches "
        "go on; the failed step's dependants are skipped.",
    )
    on_complete: OnCompleteDefinition | None = None


ON_COMPLETE = "on_complete"  # the step name an on_complete job runs as


def validate(definition: WorkflowDefinition, registry: Registry, known_queues: list[str], map_limit: int) -> None:
    """Everything that can be known before anything runs; WorkflowInvalid names the step and field."""
    errors: list[dict[str, Any]] = []
    names = [step.name for step in definition.steps]
    seen: set[str] = set()
    for index, step in enumerate(definition.steps):
        where = f"steps[{index}]"
        if step.name in seen:
            errors.append(_error(f"{where}.name", f"step {step.name!r}: a second step has this name"))
        seen.add(step.name)
        if step.name == ON_COMPLETE and definition.on_complete is not None:
            errors.append(_error(f"{where}.name", f"{ON_COMPLETE!r} is the name of the workflow's on_complete step"))
        for parent in step.depends_on:
            if parent == step.name:
                errors.append(_error(f"{where}.depends_on", f"step {step.name!r} depends on itself"))
            elif parent not in names:
                errors.append(_error(f"{where}.depends_on", f"step {step.name!r} depends on {parent!r}, "
                                                            "which is not a step of this workflow"))  # fmt: skip
    if errors:
        raise _invalid(errors)
    graph = {step.name: set(step.depends_on) for step in definition.steps}
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        cycle = " → ".join(exc.args[1])
        raise _invalid([_error("steps", f"the steps depend on each other in a cycle: {cycle}")]) from None
    ancestors: dict[str, set[str]] = {}
    for name in order:
        ancestors[name] = set().union(*({parent, *ancestors[parent]} for parent in graph[name]))
    for index, step in enumerate(definition.steps):
        errors += _step_errors(f"steps[{index}]", step, ancestors[step.name], registry, known_queues, map_limit)
    if definition.on_complete is not None:
        done = definition.on_complete
        errors += _job_errors("on_complete", ON_COMPLETE, done.type, done.payload, done.queue, registry, known_queues,
                              allowed=set(), mapped=False, batch=True)  # fmt: skip
    if errors:
        raise _invalid(errors)


def _step_errors(
    where: str,
    step: StepDefinition,
    ancestors: set[str],
    registry: Registry,
    known_queues: list[str],
    map_limit: int,
) -> list[dict[str, Any]]:
    errors = []
    if step.map is not None:
        if isinstance(step.map, list):
            if len(step.map) > map_limit:
                errors.append(_error(f"{where}.map", f"step {step.name!r} maps over {len(step.map)} items; "
                                                     f"CONVEYOR_WORKFLOW_MAP_LIMIT allows {map_limit}"))  # fmt: skip
        elif not refs.is_ref(step.map):
            errors.append(_error(f"{where}.map", f'step {step.name!r}: map is a list or {{"$ref": …}} to one'))
        else:
            errors += _ref_errors(f"{where}.map", step.name, step.map, ancestors, mapped=False, batch=False)
    return errors + _job_errors(where, step.name, step.type, step.payload, step.queue, registry, known_queues,
                                allowed=ancestors, mapped=step.map is not None, batch=False)  # fmt: skip


def _job_errors(
    where: str,
    name: str,
    job_type: str,
    payload: dict[str, Any],
    queue: str | None,
    registry: Registry,
    known_queues: list[str],
    *,
    allowed: set[str],
    mapped: bool,
    batch: bool,
) -> list[dict[str, Any]]:
    """The step's type, queue and payload: a payload is checked against its type's schema with the fields that
    hold references left out (their values exist only once the step is released)."""
    if job_type not in registry:
        known = ", ".join(spec.name for spec in registry)
        return [_error(f"{where}.type", f"step {name!r}: no job type named {job_type!r}. Known types: {known}")]
    spec = registry.get(job_type)
    errors = []
    if (queue or spec.queue) not in known_queues:
        errors.append(_error(f"{where}.queue", f"step {name!r}: no worker consumes queue {queue or spec.queue!r}"))
    errors += _ref_errors(f"{where}.payload", name, payload, allowed, mapped=mapped, batch=batch)
    if errors:
        return errors
    at_refs = [location for location, _ in refs.find(payload)]
    try:
        spec.payload.model_validate(payload)
    except ValidationError as exc:
        for error in exc.errors():
            location = tuple(error["loc"])
            if not any(location[: len(at)] == at for at in at_refs):
                field = ".".join(str(part) for part in (where, "payload", *location))
                errors.append(_error(field, f"step {name!r}: {error['msg']}"))
    return errors


def _ref_errors(
    where: str, name: str, value: Any, allowed: set[str], *, mapped: bool, batch: bool
) -> list[dict[str, Any]]:
    errors = []
    try:
        found = list(refs.find(value))
    except refs.RefInvalid as exc:
        return [_error(where, f"step {name!r}: {exc}")]
    for location, ref in found:
        field = ".".join(str(part) for part in (where, *location))
        if ref.head == "steps" and ref.step not in allowed:
            errors.append(_error(field, f"step {name!r}: {ref.text} names step {ref.step!r}, which is not among "
                                        "the steps it depends on"))  # fmt: skip
        elif ref.head in ("item", "index") and not mapped:
            errors.append(_error(field, f"step {name!r}: {ref.text} is only known in a mapped step (give `map`)"))
        elif ref.head == "batch" and not batch:
            errors.append(_error(field, f"step {name!r}: {ref.text} is only known in the on_complete step"))
    return errors


def _error(field: str, message: str) -> dict[str, Any]:
    return {"field": field, "message": message}


def _invalid(errors: list[dict[str, Any]]) -> WorkflowInvalid:
    first = errors[0]["message"]
    more = f" (and {len(errors) - 1} more problems, in `errors`)" if len(errors) > 1 else ""
    return WorkflowInvalid(f"The workflow is invalid: {first}{more}.", errors=errors)
