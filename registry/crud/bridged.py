"""What recombines with a component through one bridge: the ``via`` items of ``/compatible``."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from partsbin.parts.card import BRIDGE_ROLES, HEAD_ROLES
from partsbin.registry.db.models import Component, LineageEdge, Membership

__all__ = ["bridged_matches"]


def _bridges(session: Session, kind: str, digests: list[str], limit: int) -> list[Component]:
    if not digests:
        return []
    q = (
        sa.select(Component)
        .join(LineageEdge, LineageEdge.component_id == Component.id)
        .where(
            LineageEdge.kind == kind,
            LineageEdge.target_digest.in_(digests),
            Component.yanked_at.is_(None),
            Component.role.in_(sorted(BRIDGE_ROLES)),
        )
        .order_by(Component.id)
        .limit(limit)
    )
    return list(session.scalars(q))


def bridged_matches(
    session: Session, target: Component, anchors: list[str], *, limit: int
) -> list[tuple[Component, Component]]:
    """(other part, bridge) pairs joined by one bridge, at most ``limit``: for an extractor,
    the heads a bridge from it leads to (a head, or every head of a group); for a head, the
    extractors a bridge into it (or into one of its groups) starts from."""
    out: list[tuple[Component, Component]] = []
    if target.role == "extractor":
        for bridge in _bridges(session, "bridge_from", [target.digest], limit):
            to = str((bridge.card.get("bridge") or {}).get("to", "")).removeprefix("sha256:")
            heads = session.scalars(
                sa.select(Component)
                .outerjoin(Membership, Membership.component_id == Component.id)
                .where(
                    sa.or_(Component.digest == to, Membership.anchor_digest == to),
                    Component.role.in_(sorted(HEAD_ROLES)),
                    Component.yanked_at.is_(None),
                )
                .distinct()
                .order_by(Component.id)
                .limit(limit)
            )
            out += [(h, bridge) for h in heads]
    elif target.role in HEAD_ROLES:
        for bridge in _bridges(session, "bridge_to", [target.digest, *anchors], limit):
            source = str((bridge.card.get("bridge") or {}).get("from", "")).removeprefix("sha256:")
            ext = session.scalars(
                sa.select(Component)
                .where(Component.digest == source, Component.role == "extractor", Component.yanked_at.is_(None))
                .order_by(Component.id)
                .limit(1)
            ).first()
            if ext is not None:
                out.append((ext, bridge))
    return out[:limit]
