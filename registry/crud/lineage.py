"""Lineage: where a component came from and what came from it, as a small graph.

Edges are the relations cards name (``partsbin.parts.lineage``), recorded at publish
time in ``lineage_edges`` with the digest each one named then. Walking up follows a
component's own edges; walking down is one index lookup of ``target_digest`` per level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from partsbin.parts.lineage import LABELS
from partsbin.registry.db.models import Component, LineageEdge

__all__ = ["Node", "Edge", "Lineage", "lineage_of", "derived_from"]


@dataclass
class Node:
    key: str  # a digest, "job:ID", or "missing:TARGET"
    depth: int  # 0 for the component itself; < 0 where it came from; > 0 what came from it
    component: Component | None = None
    job_id: str | None = None
    missing: str | None = None  # a target this registry does not hold


@dataclass(frozen=True)
class Edge:
    source: str  # node keys: the relation points from the derived component to its origin
    target: str
    kind: str

    @property
    def label(self) -> str:
        return LABELS.get(self.kind, self.kind)


@dataclass
class Lineage:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    truncated: bool = False


def derived_from(session: Session, digests: list[str], limit: int) -> list[tuple[str, str, Component]]:
    """(kind, target digest, component) for components whose cards name one of ``digests``."""
    if not digests:
        return []
    rows = session.execute(
        sa.select(LineageEdge.kind, LineageEdge.target_digest, Component)
        .join(Component, Component.id == LineageEdge.component_id)
        .where(LineageEdge.target_digest.in_(digests))
        .order_by(Component.id, LineageEdge.id)
        .limit(limit)
    )
    return [(k, d or "", c) for k, d, c in rows]


def _origins(session: Session, components: list[Component]) -> list[tuple[Component, LineageEdge, Component | None]]:
    if not components:
        return []
    edges = list(
        session.scalars(
            sa.select(LineageEdge)
            .where(LineageEdge.component_id.in_([c.id for c in components]))
            .order_by(LineageEdge.id)
        )
    )
    digests = {e.target_digest for e in edges if e.target_digest}
    found: dict[str, Component] = {}
    if digests:
        # The same bytes under several names: the first publication stands for them.
        for c in session.scalars(sa.select(Component).where(Component.digest.in_(digests)).order_by(Component.id)):
            found.setdefault(c.digest, c)
    by_id = {c.id: c for c in components}
    return [(by_id[e.component_id], e, found.get(e.target_digest or "")) for e in edges]


def lineage_of(session: Session, component: Component, *, up: int = 3, down: int = 2, max_nodes: int = 40) -> Lineage:
    """The graph around ``component``: ``up`` levels of origins, ``down`` levels of what
    was derived from it, at most ``max_nodes`` nodes (``truncated`` says when more exist)."""
    graph = Lineage()
    graph.nodes[component.digest] = Node(component.digest, 0, component)

    def add(node: Node) -> bool:
        if node.key in graph.nodes:
            return True
        if len(graph.nodes) >= max_nodes:
            graph.truncated = True
            return False
        graph.nodes[node.key] = node
        return True

    frontier = [component]
    for depth in range(1, up + 1):
        nxt = []
        for child, edge, origin in _origins(session, frontier):
            if origin is not None:
                key, node = origin.digest, Node(origin.digest, -depth, origin)
                nxt.append(origin)
            elif edge.kind == "job":
                key = f"job:{edge.target}"
                node = Node(key, -depth, job_id=edge.target)
            else:
                key = f"missing:{edge.target}"
                node = Node(key, -depth, missing=edge.target)
            if add(node):
                graph.edges.append(Edge(child.digest, key, edge.kind))
        frontier = [c for c in nxt if graph.nodes[c.digest].depth == -depth]
        if not frontier:
            break

    frontier_digests = [component.digest]
    for depth in range(1, down + 1):
        found = derived_from(session, frontier_digests, limit=max_nodes + 1)
        if len(found) > max_nodes:
            graph.truncated = True
        nxt_digests = []
        for kind, target, c in found:
            if c.digest not in graph.nodes:
                if not add(Node(c.digest, depth, c)):
                    break
                nxt_digests.append(c.digest)
            graph.edges.append(Edge(c.digest, target, kind))
        frontier_digests = nxt_digests
        if not frontier_digests:
            break
    graph.edges = list(dict.fromkeys(e for e in graph.edges if e.source in graph.nodes and e.target in graph.nodes))
    return graph
