"""Compatibility lookups: which components share a group and a feature interface."""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from partsbin.parts.card import HEAD_ROLES
from partsbin.registry.crud.evaluations import at_chance, best_evaluations
from partsbin.registry.db.models import Component, Evaluation, Group, Membership

__all__ = ["Match", "compatible_with", "target_anchors", "count_members", "list_groups"]


@dataclass
class Match:
    component: Component
    anchors: list[str] = field(default_factory=list)
    #: The trusted evaluation that ranks it (crud.evaluations), if any.
    evaluation: Evaluation | None = None
    #: Measured at chance level: listed last, as "measured: not compatible".
    at_chance: bool = False
    #: The best third-party evaluation, shown but not ranked on (only without a trusted one).
    third_party: Evaluation | None = None


# The statements of this hot path are built once, with bound parameters: building a
# SQLAlchemy statement costs more CPU than PostgreSQL spends answering it here.
_TARGET_ANCHORS = (
    sa.select(Membership.anchor_digest, Component.namespace, Component.name, Component.version)
    .outerjoin(Group, Group.anchor_digest == Membership.anchor_digest)
    .outerjoin(Component, Component.id == Group.anchor_id)
    .where(Membership.component_id == sa.bindparam("target_id"))
)


def target_anchors(session: Session, target: Component) -> dict[str, str | None]:
    """The groups ``target`` belongs to: anchor digest → the anchor head's ref, in one query."""
    rows = session.execute(_TARGET_ANCHORS, {"target_id": target.id})
    return {d: (f"{ns}/{n}@{v}" if ns else None) for d, ns, n, v in rows}


def compatible_with(
    session: Session, target: Component, *, cursor: str | None, limit: int, anchors: list[str]
) -> tuple[list[Match], str | None]:
    """Extractors for a head (task or aux), or heads (task and aux) for an extractor.

    Three parts, in this order: measured compatible (a trusted evaluation above chance),
    best accuracy first; declared, unmeasured (by id); measured at chance level, best
    first. The cursor is ``m<offset>``, ``d<id>`` or ``n<offset>`` in the three parts.
    """
    is_head = target.role in HEAD_ROLES
    trusted, third = best_evaluations(session, target, target_is_head=is_head)
    measured: list[Match] = []
    failed: list[Match] = []
    if trusted:
        rows = session.scalars(
            sa.select(Component).where(Component.id.in_(list(trusted)), Component.yanked_at.is_(None))
        )
        for c in rows:
            ok_role = c.role == "extractor" if is_head else c.role in HEAD_ROLES
            if ok_role and _interfaces_meet(target, c):
                ev = trusted[c.id]
                chance = at_chance(ev, target if is_head else c)
                (failed if chance else measured).append(Match(c, [], ev, at_chance=chance))
        for part in (measured, failed):
            part.sort(key=lambda m: (-m.evaluation.value, m.component.id))  # type: ignore[union-attr]
        shared = _shared_anchors(session, anchors, [m.component.id for m in measured + failed])
        for m in measured + failed:
            m.anchors = shared.get(m.component.id, [])
    exclude = {m.component.id for m in measured + failed}
    kind, pos = (cursor[0], int(cursor[1:])) if cursor else ("m", 0)
    out: list[Match] = []
    if kind == "m":
        out = measured[pos : pos + limit]
        if pos + limit < len(measured):
            return out, f"m{pos + limit}"
        kind, pos = "d", 0
    if kind == "d":
        room = limit - len(out)
        declared, more = _declared(session, target, anchors, after=pos or None, limit=max(room, 1), exclude=exclude)
        if room == 0:
            # The page is full: point at whichever part comes next, if any.
            return out, ("d0" if declared else ("n0" if failed else None))
        for m in declared:
            m.third_party = third.get(m.component.id)
        out += declared
        if more:
            return out, f"d{declared[-1].component.id}"
        kind, pos = "n", 0
    room = limit - len(out)
    out += failed[pos : pos + room]
    return out, (f"n{pos + room}" if pos + room < len(failed) else None)


def _interfaces_meet(target: Component, other: Component) -> bool:
    if other.junction_channels != target.junction_channels or other.junction_layout != target.junction_layout:
        return False
    ext, head = (other, target) if target.role in HEAD_ROLES else (target, other)
    return head.junction_spatial is None or head.junction_spatial == ext.junction_spatial


def _shared_anchors(session: Session, anchors: list[str], ids: list[int]) -> dict[int, list[str]]:
    shared: dict[int, list[str]] = defaultdict(list)
    if not ids or not anchors:
        return shared
    for cid, digest in session.execute(
        sa.select(Membership.component_id, Membership.anchor_digest).where(
            Membership.component_id.in_(ids), Membership.anchor_digest.in_(anchors)
        )
    ):
        shared[cid].append(digest)
    return {k: sorted(v) for k, v in shared.items()}


@functools.cache
def _declared_statement(target_is_head: bool, spatial_known: bool, paged: bool, excluding: bool) -> sa.Select:
    """The page of declared matches (one more than asked, to know whether another
    follows), each component with the anchors it shares with the target: one query."""
    anchors: sa.BindParameter[list[str]] = sa.bindparam("anchors", expanding=True)
    q = (
        sa.select(Membership.component_id)
        .join(Component, Component.id == Membership.component_id)
        .where(
            Membership.anchor_digest.in_(anchors),
            Membership.junction_channels == sa.bindparam("channels"),
            Membership.junction_layout == sa.bindparam("layout"),
            Membership.component_id != sa.bindparam("target_id"),
            Component.yanked_at.is_(None),
        )
    )
    if target_is_head:
        q = q.where(Membership.role == "extractor")
        if spatial_known:
            q = q.where(Membership.junction_spatial == sa.bindparam("spatial"))
    else:
        q = q.where(Membership.role.in_(sorted(HEAD_ROLES)))
        q = q.where(
            sa.or_(Membership.junction_spatial.is_(None), Membership.junction_spatial == sa.bindparam("spatial"))
        )
    if paged:
        q = q.where(Membership.component_id > sa.bindparam("after"))
    if excluding:
        q = q.where(Membership.component_id.not_in(sa.bindparam("exclude", expanding=True)))
    page = q.group_by(Membership.component_id).order_by(Membership.component_id).limit(sa.bindparam("limit")).subquery()
    return (
        sa.select(Component, Membership.anchor_digest)
        .join(Membership, Membership.component_id == Component.id)
        .where(Component.id.in_(sa.select(page.c.component_id)), Membership.anchor_digest.in_(anchors))
        .order_by(Component.id)
    )


def _declared(
    session: Session, target: Component, anchors: list[str], *, after: int | None, limit: int, exclude: set[int]
) -> tuple[list[Match], bool]:
    if not anchors:
        return [], False
    is_head = target.role in HEAD_ROLES
    q = _declared_statement(is_head, target.junction_spatial is not None, after is not None, bool(exclude))
    params = {
        "anchors": anchors,
        "channels": target.junction_channels,
        "layout": target.junction_layout,
        "target_id": target.id,
        "spatial": target.junction_spatial,
        "after": after,
        "exclude": sorted(exclude),
        "limit": limit + 1,
    }
    rows: dict[int, Component] = {}
    shared: dict[int, list[str]] = defaultdict(list)
    for component, digest in session.execute(q, params):
        rows[component.id] = component
        shared[component.id].append(digest)
    ids = list(rows)
    return [Match(rows[i], sorted(shared[i])) for i in ids[:limit]], len(ids) > limit


def list_groups(session: Session, *, cursor: str | None, limit: int) -> tuple[list[tuple[Group, int]], str | None]:
    counts = (
        sa.select(Membership.anchor_digest, sa.func.count().label("n"))
        .join(Component, Component.id == Membership.component_id)
        .where(Component.yanked_at.is_(None))
        .group_by(Membership.anchor_digest)
        .subquery()
    )
    q = sa.select(Group, sa.func.coalesce(counts.c.n, 0)).outerjoin(
        counts, counts.c.anchor_digest == Group.anchor_digest
    )
    if cursor:
        q = q.where(Group.anchor_digest > cursor)
    rows = list(session.execute(q.order_by(Group.anchor_digest).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return [(g, n) for g, n in rows], (rows[-1][0].anchor_digest if more and rows else None)


def count_members(session: Session, digest: str) -> int:
    q = (
        sa.select(sa.func.count())
        .select_from(Membership)
        .join(Component, Component.id == Membership.component_id)
        .where(Membership.anchor_digest == digest, Component.yanked_at.is_(None))
    )
    return int(session.scalar(q) or 0)
