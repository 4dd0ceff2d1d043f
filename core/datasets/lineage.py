"""A dataset's lineage: the version it is now, the job that made it and what that job read, followed upstream through
each input's version as it was read, to the files and URLs the ingests loaded. One query per level of the graph."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.models import Dataset, DatasetVersion

MAX_NODES = 200  # a graph deeper or wider than this is cut, and says so
NodeKey = tuple[uuid.UUID, int | None]  # a dataset and one of its versions


@dataclass
class LineageNode:
    dataset_id: uuid.UUID
    version: int | None
    name: str
    exists: bool  # False once the dataset was deleted (its name is the one recorded when it was read)
    operation: str | None = None  # ingest, aggregate, join, query; None for a version no longer recorded
    job_id: uuid.UUID | None = None
    created_at: datetime | None = None
    source: dict[str, Any] | None = None  # an ingest's file or URL
    inputs: list[dict[str, Any]] = field(default_factory=list)  # [{dataset_id, name, version}]

    @property
    def key(self) -> NodeKey:
        return self.dataset_id, self.version

    @property
    def reads(self) -> list[NodeKey]:
        """The keys of its inputs: the graph's edges into it."""
        return [(uuid.UUID(str(i["dataset_id"])), i.get("version")) for i in self.inputs]


@dataclass
class Lineage:
    nodes: list[LineageNode]  # the dataset's current version first, then upstream, level by level
    truncated: bool


def lineage_of(session: Session, dataset: Dataset) -> Lineage:
    """Breadth-first from the dataset's current version; inputs are looked up in the dataset's tenant only."""
    nodes: dict[NodeKey, LineageNode] = {}
    level: dict[NodeKey, str] = {(dataset.id, dataset.version): dataset.name}  # each key with a recorded name
    truncated = False
    while level:
        wanted = [key for key in level if key not in nodes]
        if len(nodes) + len(wanted) > MAX_NODES:
            wanted, truncated = wanted[: MAX_NODES - len(nodes)], True
        if not wanted:
            break
        found = _versions(session, wanted, tenant_id=dataset.tenant_id)
        following: dict[NodeKey, str] = {}
        for key in wanted:
            node = nodes[key] = _node(found, *key, level[key])
            for read, recorded in zip(node.reads, node.inputs, strict=True):
                following.setdefault(read, str(recorded.get("name", "")))  # the first name recorded for it
        level = following
    return Lineage(nodes=list(nodes.values()), truncated=truncated)


def _versions(
    session: Session, wanted: list[NodeKey], *, tenant_id: str
) -> dict[uuid.UUID, tuple[Dataset, dict[int, DatasetVersion]]]:
    """The tenant's datasets among `wanted`, each with the wanted versions of it that are recorded."""
    ids = {dataset_id for dataset_id, _ in wanted}
    datasets = session.scalars(sa.select(Dataset).where(Dataset.id.in_(ids), Dataset.tenant_id == tenant_id))
    found: dict[uuid.UUID, tuple[Dataset, dict[int, DatasetVersion]]] = {d.id: (d, {}) for d in datasets}
    pairs = [(dataset_id, version) for dataset_id, version in wanted if dataset_id in found and version is not None]
    if pairs:
        query = sa.select(DatasetVersion).where(sa.tuple_(DatasetVersion.dataset_id, DatasetVersion.version).in_(pairs))
        for row in session.scalars(query):
            found[row.dataset_id][1][row.version] = row
    return found


def _node(found: dict[uuid.UUID, tuple[Dataset, dict[int, DatasetVersion]]], dataset_id: uuid.UUID,
          version: int | None, recorded_name: str) -> LineageNode:  # fmt: skip
    if dataset_id not in found:
        return LineageNode(dataset_id=dataset_id, version=version, name=recorded_name, exists=False)
    dataset, versions = found[dataset_id]
    row = versions.get(version) if version is not None else None
    if row is None:  # a version before lineage was recorded, or an aggregate's input from then
        return LineageNode(dataset_id=dataset_id, version=version, name=dataset.name, exists=True)
    source = dict(row.source or {})
    operation = str(source.pop("operation", "aggregate" if "aggregate_of" in source else "ingest"))
    inputs = list(row.inputs or [])
    if not inputs and "aggregate_of" in source:  # aggregates made before inputs were recorded
        inputs = [{"dataset_id": source["aggregate_of"], "name": "", "version": None}]
    return LineageNode(dataset_id=dataset_id, version=version, name=dataset.name, exists=True, operation=operation,
                       job_id=row.job_id, created_at=row.created_at, inputs=inputs,
                       source=source if operation == "ingest" else None)  # fmt: skip
