"""A dataset's lineage drawn as a graph for its console page: the datasets it was made from to the left, in columns by
how far upstream they are, an arrow from each input to what read it. Laid out here and drawn as server-side SVG, so
the page needs no script and nothing from the internet."""

from __future__ import annotations

from dataclasses import dataclass

from api.console.render import short_id
from core.datasets.lineage import Lineage, LineageNode, NodeKey

BOX_WIDTH, BOX_HEIGHT = 190, 46
COLUMN_GAP, ROW_GAP = 56, 16
NAME_CHARACTERS = 24


@dataclass(frozen=True)
class Box:
    node: LineageNode
    x: int
    y: int
    current: bool  # the dataset whose page this is

    @property
    def name(self) -> str:
        name = self.node.name or short_id(self.node.dataset_id)
        return name if len(name) <= NAME_CHARACTERS else name[: NAME_CHARACTERS - 1] + "…"

    @property
    def detail(self) -> str:
        version = "" if self.node.version is None else f"v{self.node.version} · "
        return f"{version}{self.node.operation or ('deleted' if not self.node.exists else 'unrecorded')}"


@dataclass(frozen=True)
class Edge:
    path: str  # SVG path data, from the input's right side to the reader's left


@dataclass(frozen=True)
class LineageGraph:
    boxes: list[Box]
    edges: list[Edge]
    width: int
    height: int
    truncated: bool


def layout(lineage: Lineage) -> LineageGraph:
    """Each node in the column of its longest path to the dataset (so every arrow points right), nodes of a column in
    the order the lineage found them."""
    by_key = {node.key: node for node in lineage.nodes}
    depth: dict[NodeKey, int] = {lineage.nodes[0].key: 0}
    for _ in lineage.nodes:  # relax: a DAG settles within as many rounds as it has nodes
        changed = False
        for node in lineage.nodes:
            here = depth.get(node.key)
            if here is None:
                continue
            for upstream in node.reads:
                if upstream in by_key and depth.get(upstream, -1) < here + 1:
                    depth[upstream], changed = here + 1, True
        if not changed:
            break
    deepest = max(depth.values())
    rows: dict[int, int] = {}
    boxes: dict[NodeKey, Box] = {}
    for node in lineage.nodes:
        level = depth.get(node.key, deepest)
        row = rows.get(level, 0)
        rows[level] = row + 1
        x = (deepest - level) * (BOX_WIDTH + COLUMN_GAP)
        boxes[node.key] = Box(node, x, row * (BOX_HEIGHT + ROW_GAP), current=node is lineage.nodes[0])
    edges = [Edge(_curve(boxes[upstream], reader)) for reader in boxes.values() for upstream in reader.node.reads
             if upstream in boxes]  # fmt: skip
    return LineageGraph(
        boxes=list(boxes.values()),
        edges=edges,
        width=(deepest + 1) * (BOX_WIDTH + COLUMN_GAP) - COLUMN_GAP + 2,
        height=max(rows.values()) * (BOX_HEIGHT + ROW_GAP) - ROW_GAP + 2,
        truncated=lineage.truncated,
    )


def _curve(source: Box, reader: Box) -> str:
    x1, y1 = source.x + BOX_WIDTH, source.y + BOX_HEIGHT // 2
    x2, y2 = reader.x - 6, reader.y + BOX_HEIGHT // 2  # room for the arrowhead
    middle = (x1 + x2) // 2
    return f"M{x1 + 1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}"
