"""Paths from an extractor to a head: direct (a shared group), or through bridges.

A bridge (an ``adapter`` or ``transform``) is an edge between representation spaces, named
by its card's ``bridge: {from, to}`` and recorded at publish time in ``lineage_edges``
(kinds ``bridge_from`` / ``bridge_to``, with the digest each named then). The search walks
breadth-first from the extractor's space: at each level, one indexed lookup of
``lineage_edges.target_digest`` finds every bridge out of the spaces reached so far. A
bridge ends a path when it leads to the head, or to a group the head belongs to; one that
leads to another extractor's space carries the walk on (up to ``max_bridges`` bridges).
From any space reached, the head is also reached directly when the space's extractor
shares a group with it, or is the extractor it was trained with.

An evaluation measures a path when it names the same pair and, in ``details.via``, the
same bridges in order (metric ``bridged_recombination_accuracy``; direct pairs keep
``recombination_accuracy``, so bridged measurements never rank ``/compatible``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from partsbin.parts.card import BRIDGE_ROLES, bridge_space
from partsbin.registry.crud.evaluations import TRUSTED, at_chance
from partsbin.registry.db.models import Component, Evaluation, LineageEdge, Membership

__all__ = ["Step", "Path", "find_paths", "BRIDGED_METRIC"]

BRIDGED_METRIC = "bridged_recombination_accuracy"
DIRECT_METRIC = "recombination_accuracy"


@dataclass
class Step:
    kind: str  # "group", "sibling", "measured", "adapter", "transform"
    why: str
    component: Component | None = None
    anchor: str | None = None


@dataclass
class Path:
    bridges: list[Component]
    steps: list[Step]
    evaluation: Evaluation | None = None
    at_chance: bool = False

    @property
    def via(self) -> list[str]:
        return [f"sha256:{b.digest}" for b in self.bridges]

    @property
    def composable(self) -> bool:
        """Whether ``assemble`` can build it as one module: adapters, and FCT transforms of
        junction features, map what a head takes; FCT transforms of pooled embeddings are
        for retrieval over a stored gallery (``Registry.transform_gallery``)."""
        return all(bridge_space(b.role, b.card.get("bridge") or {}) == "junction" for b in self.bridges)

    @property
    def kind(self) -> str:
        return "direct" if not self.bridges else "bridged"


@dataclass
class _Space:
    extractor: Component
    bridges: list[Component] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)


_BRIDGES_FROM = (
    sa.select(LineageEdge.target_digest, Component)
    .join(Component, Component.id == LineageEdge.component_id)
    .where(
        LineageEdge.kind == "bridge_from",
        LineageEdge.target_digest.in_(sa.bindparam("digests", expanding=True)),
        Component.yanked_at.is_(None),
        Component.role.in_(sorted(BRIDGE_ROLES)),
    )
    .order_by(Component.id)
)


def _anchors_of(session: Session, ids: list[int]) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {i: set() for i in ids}
    if ids:
        for cid, digest in session.execute(
            sa.select(Membership.component_id, Membership.anchor_digest).where(Membership.component_id.in_(ids))
        ):
            out[cid].add(digest)
    return out


def _by_digest(session: Session, digests: set[str]) -> dict[str, Component]:
    found: dict[str, Component] = {}
    if digests:
        q = sa.select(Component).where(Component.digest.in_(sorted(digests)), Component.yanked_at.is_(None))
        for c in session.scalars(q.order_by(Component.id)):
            found.setdefault(c.digest, c)
    return found


def _sibling_digest(session: Session, head: Component) -> str | None:
    return session.scalar(
        sa.select(LineageEdge.target_digest).where(LineageEdge.component_id == head.id, LineageEdge.kind == "sibling")
    )


def _meets(extractor: Component, head: Component) -> bool:
    if extractor.junction_channels != head.junction_channels or extractor.junction_layout != head.junction_layout:
        return False
    return head.junction_spatial is None or head.junction_spatial == extractor.junction_spatial


#: Chains followed per level at most: parallel bridges multiply them (20 adapters per hop,
#: three hops: 8,000), and a hostile graph could make any number.
MAX_CHAINS = 10_000


def find_paths(session: Session, extractor: Component, head: Component, *, max_bridges: int) -> list[Path]:
    """Every path of at most ``max_bridges`` bridges, best first: measured above chance
    (best accuracy first), then unmeasured (fewest bridges first), then measured at chance.

    Every chain is followed, parallel bridges included (several adapters between the same
    two spaces are several paths); a chain never passes the same space twice, so cycles
    end. Chains are deduplicated by their bridges; at most :data:`MAX_CHAINS` per level."""
    head_anchors = _anchors_of(session, [head.id])[head.id]
    sibling = _sibling_digest(session, head)
    found: dict[tuple[int, ...], Path] = {}
    frontier = [_Space(extractor)]
    for depth in range(max_bridges + 1):
        anchors = _anchors_of(session, sorted({s.extractor.id for s in frontier}))
        for space in frontier:
            ext = space.extractor
            if not _meets(ext, head):
                continue
            shared = sorted(anchors[ext.id] & head_anchors)
            key = tuple(b.id for b in space.bridges)
            if shared:
                why = f"{ext.ref} and {head.ref} were trained against the same aux head (group sha256:{shared[0]})"
                found.setdefault(
                    key, Path(space.bridges, [*space.steps, Step("group", why, anchor=f"sha256:{shared[0]}")])
                )
            elif ext.digest == sibling:
                why = f"{head.ref} was trained with {ext.ref}"
                found.setdefault(key, Path(space.bridges, [*space.steps, Step("sibling", why)]))
        if depth == max_bridges or not frontier:
            break
        by_digest: dict[str, list[_Space]] = {}
        for space in frontier:
            by_digest.setdefault(space.extractor.digest, []).append(space)
        rows = list(session.execute(_BRIDGES_FROM, {"digests": sorted(by_digest)}))
        targets = {(b.card.get("bridge") or {}).get("to", "").removeprefix("sha256:") for _d, b in rows}
        into = _by_digest(session, targets - {head.digest} - head_anchors)
        nxt: list[_Space] = []
        for source_digest, bridge in rows:
            to = (bridge.card.get("bridge") or {}).get("to", "").removeprefix("sha256:")
            for space in by_digest[str(source_digest)]:
                chain = [*space.bridges, bridge]
                key = tuple(b.id for b in chain)
                if to == head.digest:
                    why = f"{bridge.role} {bridge.ref} maps {space.extractor.ref}'s features into {head.ref}"
                    found.setdefault(key, Path(chain, [*space.steps, Step(bridge.role, why, bridge)]))
                elif to in head_anchors:
                    why = (
                        f"{bridge.role} {bridge.ref} maps {space.extractor.ref}'s features into the group of aux head "
                        f"sha256:{to}, which {head.ref} belongs to"
                    )
                    step = Step(bridge.role, why, bridge, anchor=f"sha256:{to}")
                    found.setdefault(key, Path(chain, [*space.steps, step]))
                elif (
                    to in into
                    and into[to].role == "extractor"
                    # A chain never enters a space it passed: the start or any bridge's target.
                    and to != extractor.digest
                    and all(_space_of(b) != to for b in space.bridges)
                    and len(nxt) < MAX_CHAINS
                ):
                    new = into[to]
                    why = f"{bridge.role} {bridge.ref} maps {space.extractor.ref}'s features into {new.ref}'s"
                    if bridge_space(bridge.role, bridge.card.get("bridge") or {}) == "embedding":
                        why += " (pooled embeddings, FCT: for retrieval through Registry.transform_gallery)"
                    elif bridge.role == "transform":
                        why += " (junction features, FCT: with its side-information model, if any)"
                    nxt.append(_Space(new, chain, [*space.steps, Step(bridge.role, why, bridge)]))
        frontier = nxt
    paths = list(found.values())
    _measure(session, extractor, head, paths)
    return sorted(paths, key=_rank)


def _space_of(bridge: Component) -> str:
    """The space a bridge leads into (its ``bridge.to``), as a hex digest."""
    return str((bridge.card.get("bridge") or {}).get("to", "")).removeprefix("sha256:")


def _rank(p: Path) -> tuple[int, float, int]:
    if p.evaluation is not None and not p.at_chance:
        return (0, -p.evaluation.value, len(p.bridges))
    if p.evaluation is None:
        return (1, 0.0, len(p.bridges))
    return (2, -p.evaluation.value, len(p.bridges))


def _measure(session: Session, extractor: Component, head: Component, paths: list[Path]) -> None:
    """Attach to each path the trusted evaluation of the pair through the same bridges
    (most samples first), in batch-statistics mode; one indexed query for the pair."""
    evs = list(
        session.scalars(
            sa.select(Evaluation)
            .where(
                Evaluation.extractor_id == extractor.id,
                Evaluation.head_id == head.id,
                Evaluation.metric.in_([DIRECT_METRIC, BRIDGED_METRIC]),
                Evaluation.bn_mode == "batch",
                Evaluation.trust.in_(TRUSTED),
            )
            .order_by(Evaluation.samples.desc(), Evaluation.id.desc())
        )
    )
    best: dict[tuple[str, ...], Evaluation] = {}
    for ev in evs:
        via = tuple((ev.details or {}).get("via") or ()) if ev.metric == BRIDGED_METRIC else ()
        best.setdefault(via, ev)
    for p in paths:
        measured = best.get(tuple(p.via))
        if measured is not None:
            p.evaluation = measured
            p.at_chance = at_chance(measured, head)
    if () in best and not any(not p.bridges for p in paths):
        # A direct pair with no shared group, measured: a path only where it works.
        direct = best[()]
        if not at_chance(direct, head) and _meets(extractor, head):
            why = f"measured: {extractor.ref} + {head.ref} recombine at {direct.value:.1%} on {direct.samples} images"
            paths.append(Path([], [Step("measured", why)], direct))
