"""The job-type contract (`JobSpec`) and the registry, filled from the `conveyor.job_types` entry points."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from core.context import JobContext
from core.queue_names import QueueNames

ENTRY_POINT_GROUP = "conveyor.job_types"

Handler = Callable[[Any, JobContext], BaseModel]


@dataclass(frozen=True)
class JobSpec:
    """A job type: its name, payload/result models, routing and retry policy, and its one handler."""

    name: str
    payload: type[BaseModel]
    result: type[BaseModel]
    handler: Handler
    description: str = ""
    queue: str = QueueNames.DEFAULT
    priority: int = 0
    max_attempts: int = 3
    retry_backoff: float = 2.0  # seconds before the 2nd attempt; doubles each attempt, with jitter
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    soft_time_limit: float | None = None  # raises inside the handler (a retryable failure)
    time_limit: float = 3600.0  # kills the worker process; the lease then expires and the reconciler takes over
    tags: tuple[str, ...] = field(default_factory=tuple)
    # Checks the payload against the database at submit (e.g. that a dataset has the named columns), so a request
    # that can only fail is refused with a 4xx instead of becoming a failed job. Raises a ConveyorError. Called with
    # (payload, session, tenant_id): an object the payload names must be the submitting tenant's.
    check: Callable[[Any, Session, str], object] | None = None
    # Days a finished job of this type is kept, by status (succeeded, failed, cancelled; 0: forever), instead of
    # CONVEYOR_RETENTION_<STATUS>_DAYS: e.g. {"succeeded": 1} for a chatty type, {"failed": 90} for an audited one.
    retention_days: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.retention_days) - {"succeeded", "failed", "cancelled"}
        if unknown or any(days < 0 for days in self.retention_days.values()):
            raise ValueError(f"{self.name}: retention_days takes succeeded, failed and cancelled, each >= 0 days")


class DuplicateJobType(Exception):
    pass


class UnknownJobType(KeyError):
    pass


class Registry:
    """Job types keyed by their stable name; a second registration of a name is refused."""

    def __init__(self, specs: list[JobSpec] | None = None) -> None:
        self._specs: dict[str, JobSpec] = {}
        for spec in specs or []:
            self.register(spec)

    def register(self, spec: JobSpec) -> None:
        if spec.name in self._specs:
            raise DuplicateJobType(f"job type {spec.name!r} is already registered")
        self._specs[spec.name] = spec

    def get(self, name: str) -> JobSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownJobType(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[JobSpec]:
        return iter(sorted(self._specs.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._specs)


def load_registry() -> Registry:
    """Every job type installed in this environment, built-in or third-party, through one entry-point group."""
    registry = Registry()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        spec = ep.load()
        if not isinstance(spec, JobSpec):
            raise TypeError(f"entry point {ep.name!r} ({ep.value}) is not a JobSpec")
        if spec.name != ep.name:
            raise ValueError(f"entry point {ep.name!r} points at job type {spec.name!r}; the names must match")
        registry.register(spec)
    return registry
