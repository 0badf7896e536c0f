"""Compatibility lookups: which components share a group and a feature interface."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session

from parts.card import HEAD_ROLES

from ..db.models import Component, Group, Membership

__all__ = ["Match", "compatible_with", "anchor_refs", "count_members", "list_groups"]


@dataclass
class Match:
    component: Component
    anchors: list[str] = field(default_factory=list)


def compatible_with(session: Session, target: Component, *, cursor: int | None, limit: int) -> tuple[list[Match], str | None]:
    """Extractors for a head (task or aux), or heads (task and aux) for an extractor."""
    anchors = [m.anchor_digest for m in target.memberships]
    if not anchors:
        return [], None
    q = (
        sa.select(Membership.component_id)
        .join(Component, Component.id == Membership.component_id)
        .where(
            Membership.anchor_digest.in_(anchors),
            Membership.junction_channels == target.junction_channels,
            Membership.component_id != target.id,
            Component.yanked_at.is_(None),
        )
    )
    if target.role in HEAD_ROLES:
        q = q.where(Membership.role == "extractor")
        if target.junction_spatial is not None:
            q = q.where(Membership.junction_spatial == target.junction_spatial)
    else:
        q = q.where(Membership.role.in_(sorted(HEAD_ROLES)))
        q = q.where(sa.or_(Membership.junction_spatial.is_(None), Membership.junction_spatial == target.junction_spatial))
    if cursor is not None:
        q = q.where(Membership.component_id > cursor)
    ids = list(session.scalars(q.group_by(Membership.component_id).order_by(Membership.component_id).limit(limit + 1)))
    more = len(ids) > limit
    ids = ids[:limit]
    if not ids:
        return [], None
    rows = {c.id: c for c in session.scalars(sa.select(Component).where(Component.id.in_(ids)))}
    shared: dict[int, list[str]] = defaultdict(list)
    for cid, digest in session.execute(
        sa.select(Membership.component_id, Membership.anchor_digest).where(
            Membership.component_id.in_(ids), Membership.anchor_digest.in_(anchors)
        )
    ):
        shared[cid].append(digest)
    matches = [Match(rows[i], sorted(shared[i])) for i in ids]
    return matches, (str(ids[-1]) if more else None)


def anchor_refs(session: Session, digests: set[str]) -> dict[str, str]:
    if not digests:
        return {}
    q = sa.select(Group.anchor_digest, Component).join(Component, Component.id == Group.anchor_id).where(Group.anchor_digest.in_(digests))
    return {d: c.ref for d, c in session.execute(q)}


def list_groups(session: Session, *, cursor: str | None, limit: int) -> tuple[list[tuple[Group, int]], str | None]:
    counts = (
        sa.select(Membership.anchor_digest, sa.func.count().label("n"))
        .join(Component, Component.id == Membership.component_id)
        .where(Component.yanked_at.is_(None))
        .group_by(Membership.anchor_digest)
        .subquery()
    )
    q = sa.select(Group, sa.func.coalesce(counts.c.n, 0)).outerjoin(counts, counts.c.anchor_digest == Group.anchor_digest)
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
