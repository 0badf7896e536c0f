"""Reading and writing components, groups and aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from partsbin.parts.card import AUX_ROLES, Card
from partsbin.parts.lineage import relations_of
from partsbin.parts.names import InvalidName, Ref, parse_digest, parse_ref
from partsbin.registry.db.models import Alias, Component, ComponentTag, Group, LineageEdge, Membership, utcnow
from partsbin.registry.errors import Conflict, NotFound
from partsbin.registry.webhooks import events

__all__ = [
    "find_by_digest",
    "resolve_ref",
    "create_component",
    "component_values",
    "membership_values",
    "list_components",
    "list_versions",
    "list_aliases",
    "set_alias",
    "delete_alias",
    "yank",
    "unyank",
    "Page",
]


@dataclass
class Page:
    items: list[Component]
    next_cursor: str | None


def find_by_digest(session: Session, digest: str, include_yanked: bool = True) -> Component | None:
    # The same bytes may be published under several names; the first publication wins.
    q = sa.select(Component).where(Component.digest == digest)
    if not include_yanked:
        q = q.where(Component.yanked_at.is_(None))
    return session.scalars(q.order_by(Component.id).limit(1)).first()


# The lookups every request by ref makes, built once with bound parameters.
_BY_NAME = sa.select(Component).where(Component.namespace == sa.bindparam("ns"), Component.name == sa.bindparam("name"))
_EXACT = _BY_NAME.where(Component.version == sa.bindparam("version"))
_SAME_BYTES = _BY_NAME.where(Component.digest == sa.bindparam("digest"))
_LATEST = _BY_NAME.where(Component.yanked_at.is_(None)).order_by(Component.version.desc()).limit(1)


def resolve_ref(session: Session, ref: Ref) -> Component:
    """The component a ref names. Exact versions and digests resolve yanked versions too."""
    if ref.kind == "digest":
        found = find_by_digest(session, ref.digest or "")
        if found is None:
            raise NotFound(f"no component with digest sha256:{ref.digest}")
        return found
    names = {"ns": ref.namespace, "name": ref.name}
    if ref.kind == "version":
        found = session.scalars(_EXACT, {**names, "version": ref.version}).first()
        if found is None:
            raise NotFound(f"{ref.full_name} has no version {ref.version}")
        return found
    if ref.kind == "alias":
        alias = session.get(Alias, (ref.namespace, ref.name, ref.alias))
        if alias is None:
            raise NotFound(f"{ref.full_name} has no alias {ref.alias!r}")
        found = session.scalars(
            _EXACT.where(Component.yanked_at.is_(None)), {**names, "version": alias.version}
        ).first()
        if found is None:
            raise NotFound(f"alias {ref} points at version {alias.version}, which is yanked")
        return found
    found = session.scalars(_LATEST, names).first()
    if found is None:
        exists = session.scalar(sa.select(sa.func.count()).select_from(_BY_NAME.subquery()), names)
        raise NotFound(
            f"every version of {ref.full_name} is yanked" if exists else f"no component named {ref.full_name}"
        )
    return found


def create_component(
    *, session: Session, card: Card, digest: str, size: int, published_by: int | None
) -> tuple[Component, bool]:
    """Insert the next version of ``card.name``; returns ``(component, created)``.

    Identical bytes under the same name return the existing version (idempotent
    re-upload). The caller has already stored the blob: a row only ever points at a
    blob that exists.
    """
    ns, name = card.namespace, card.short_name
    _lock_name(session, ns, name)
    existing = _same_bytes(session, ns, name, digest)
    if existing is not None:
        return existing, False

    junction = card.interface.junction
    edges = _lineage_targets(session, card.model_dump(mode="json"))
    # A new version of an anchor (update-head of a shared head) stays in its group: it
    # anchors no group of its own, and what trains against it joins the group it came from.
    version_of_anchor = _is_version_of_anchor(card)
    groups = membership_values(card, digest, own_group=not version_of_anchor)
    roots = _root_groups(session, [m["anchor_digest"] for m in groups])
    groups += [{**groups[0], "anchor_digest": r} for r in roots if r not in {m["anchor_digest"] for m in groups}]
    for _attempt in range(5):
        latest = session.scalar(
            sa.select(sa.func.max(Component.version)).where(Component.namespace == ns, Component.name == name)
        )
        version = (latest or 0) + 1
        row = Component(**component_values(card, digest=digest, size=size, version=version, published_by=published_by))
        row.tags = [ComponentTag(tag=t) for t in sorted(set(card.tags))]
        row.lineage = [LineageEdge(kind=k, target=t, target_digest=d) for k, t, d in edges]
        row.memberships = [Membership(**m) for m in groups]
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
                if card.role in AUX_ROLES and not version_of_anchor and session.get(Group, digest) is None:
                    session.add(
                        Group(
                            anchor_digest=digest,
                            anchor_id=row.id,
                            kind=card.role.removeprefix("aux-"),
                            junction_channels=junction.channels,
                            junction_layout=junction.layout,
                        )
                    )
                    session.flush()
        except IntegrityError:
            # A concurrent upload took this version number (take the next one), or
            # stored these very bytes under this name first (then it is an idempotent
            # re-upload after all).
            existing = _same_bytes(session, ns, name, digest)
            if existing is not None:
                return existing, False
            continue
        events.component_published(session, row)
        return row, True
    raise Conflict(
        f"could not assign a version to {card.name}: other uploads of it kept taking the next number; try again"
    )


def component_values(card: Card, *, digest: str, size: int, version: int, published_by: int | None) -> dict[str, Any]:
    """The columns of a component's row: what :func:`create_component` inserts, and what a
    bulk load through the registry's own schema writes (``bench/registry_bench.py``)."""
    junction = card.interface.junction
    stored = card.model_copy(update={"version": version, "digest": f"sha256:{digest}", "size": size})
    return {
        "namespace": card.namespace,
        "name": card.short_name,
        "version": version,
        "role": card.role,
        "arch_name": card.arch.name,
        "digest": digest,
        "size": size,
        "card": stored.model_dump(mode="json"),
        "junction_channels": junction.channels,
        "junction_spatial": None if junction.spatial == "any" else junction.spatial,
        "junction_layout": junction.layout,
        "dataset": card.provenance.dataset.name if card.provenance.dataset else None,
        "description": card.description,
        "published_by": published_by,
    }


def membership_values(card: Card, digest: str, *, own_group: bool = True) -> list[dict[str, Any]]:
    """The groups a component joins (without its id): its anchors, and an aux head's own."""
    junction = card.interface.junction
    anchors = {a.removeprefix("sha256:") for a in card.compat.anchors}
    if card.role in AUX_ROLES and own_group:
        anchors.add(digest)
    spatial = None if junction.spatial == "any" else junction.spatial
    return [
        {
            "anchor_digest": a,
            "role": card.role,
            "junction_channels": junction.channels,
            "junction_spatial": spatial,
            "junction_layout": junction.layout,
        }
        for a in sorted(anchors)
    ]


def _is_version_of_anchor(card: Card) -> bool:
    """An aux head published as the next version of one of its own anchors (update-head)."""
    updated = (card.provenance.model_extra or {}).get("updated_from")
    return card.role in AUX_ROLES and isinstance(updated, str) and updated in card.compat.anchors


def _root_groups(session: Session, anchors: list[str]) -> list[str]:
    """For anchors that anchor no group (versions of an anchor), the group each descends
    from: followed through ``provenance.updated_from``, a few versions at most."""
    roots = []
    for anchor in anchors:
        digest: str | None = anchor
        for _hop in range(8):
            if digest is None or session.get(Group, digest) is not None:
                break
            found = find_by_digest(session, digest)
            updated = (found.card.get("provenance") or {}).get("updated_from") if found is not None else None
            digest = updated.removeprefix("sha256:") if isinstance(updated, str) else None
        if digest is not None and digest != anchor and session.get(Group, digest) is not None:
            roots.append(digest)
    return roots


def _lineage_targets(session: Session, card: dict) -> list[tuple[str, str, str | None]]:
    """(kind, target as written, target digest) for each relation the card names.

    A ref is resolved now, to the component it names at publication: ``ns/name`` means
    the latest version *then*, whatever is published later.
    """
    out = []
    for rel in relations_of(card):
        digest = None
        try:
            if rel.target_kind == "digest":
                digest = parse_digest(rel.target)
            elif rel.target_kind == "ref":
                digest = resolve_ref(session, parse_ref(rel.target)).digest
        except (InvalidName, NotFound):
            digest = None
        out.append((rel.kind, rel.target, digest))
    return out


def _same_bytes(session: Session, namespace: str, name: str, digest: str) -> Component | None:
    return session.scalars(_SAME_BYTES, {"ns": namespace, "name": name, "digest": digest}).first()


def _lock_name(session: Session, namespace: str, name: str) -> None:
    """On PostgreSQL, serialise version assignment per name until this transaction ends.

    Without it, concurrent uploads of one name all read the same latest version, and
    all but one fail their insert and retry; with six at once a loser can run out of
    retries. SQLite already serialises writers, so the retry loop below suffices there.
    """
    if session.get_bind().dialect.name == "postgresql":
        key = sa.func.hashtextextended(f"{namespace}/{name}", 0)
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_components(
    session: Session,
    *,
    role: str | None = None,
    arch: str | None = None,
    group: str | None = None,
    dataset: str | None = None,
    namespace: str | None = None,
    prefix: str | None = None,
    tag: str | None = None,
    q: str | None = None,
    include_yanked: bool = False,
    cursor: int | None = None,
    limit: int = 50,
) -> Page:
    """One page of components, oldest first; the API's ``GET /components`` and the web
    page's list both come here. ``q`` matches ``namespace/name`` and the description
    (case-insensitive substring); ``tag`` is one of the card's tags."""
    query = _filtered(
        role=role,
        arch=arch,
        group=group,
        dataset=dataset,
        namespace=namespace,
        prefix=prefix,
        tag=tag,
        text=q,
        include_yanked=include_yanked,
    )
    rows, last = _one_page(session, query, cursor, limit)
    return Page(rows, None if last is None else str(last.id))


def list_member_ids(
    session: Session, *, group: str, role: str, cursor: int | None = None, limit: int = 50
) -> tuple[list[int], str | None]:
    """The ids of one page of a group's unyanked members of ``role`` (what
    :func:`list_components` would list), without loading the rows: for a page that
    needs only whether there are more, and which."""
    query = _filtered(
        role=role,
        arch=None,
        group=group,
        dataset=None,
        namespace=None,
        prefix=None,
        tag=None,
        text=None,
        include_yanked=False,
    ).with_only_columns(Component.id)
    ids, last = _one_page(session, query, cursor, limit)
    return ids, None if last is None else str(last)


def _one_page(session: Session, query: sa.Select[Any], cursor: int | None, limit: int) -> tuple[list[Any], Any]:
    """One page of ``query`` in id order after ``cursor``, and its last item when more follow."""
    if cursor is not None:
        query = query.where(Component.id > cursor)
    items = list(session.scalars(query.order_by(Component.id).limit(limit + 1)))
    more = len(items) > limit
    items = items[:limit]
    return items, items[-1] if more and items else None


def _filtered(
    *,
    role: str | None,
    arch: str | None,
    group: str | None,
    dataset: str | None,
    namespace: str | None,
    prefix: str | None,
    tag: str | None,
    text: str | None,
    include_yanked: bool,
) -> sa.Select[Component]:
    q = sa.select(Component)
    if not include_yanked:
        q = q.where(Component.yanked_at.is_(None))
    if role and not group:
        q = q.where(Component.role == role)
    if arch:
        q = q.where(Component.arch_name == arch)
    if dataset:
        q = q.where(Component.dataset == dataset)
    if namespace:
        q = q.where(Component.namespace == namespace)
    if prefix:
        if "/" in prefix:
            ns, _, rest = prefix.partition("/")
            q = q.where(Component.namespace == ns, Component.name.like(_escape_like(rest) + "%", escape="\\"))
        else:
            q = q.where(Component.namespace.like(_escape_like(prefix) + "%", escape="\\"))
    if group:
        # The role is asked of the membership's copy of it: a range of ix_memberships_lookup.
        # Asked of the component, it led SQLite to walk the role index over every
        # component of that role (half the registry) and test each for the group:
        # 9 ms at 27,000 components, growing with the registry, where the group's range
        # stays the size of the group.
        members = sa.select(Membership.component_id).where(Membership.anchor_digest == group)
        if role:
            members = members.where(Membership.role == role)
        q = q.where(Component.id.in_(members))
    if tag:
        q = q.where(Component.id.in_(sa.select(ComponentTag.component_id).where(ComponentTag.tag == tag.strip())))
    if text:
        # A substring anywhere cannot use a b-tree index on either database; this is a
        # scan of plain columns (no JSON parsing per row), measured in bench/web_bench.py.
        pattern = "%" + _escape_like(text.strip()) + "%"
        q = q.where(
            sa.or_(
                (Component.namespace + "/" + Component.name).ilike(pattern, escape="\\"),
                Component.description.ilike(pattern, escape="\\"),
            )
        )
    return q


def list_versions(
    session: Session, namespace: str, name: str, *, after: int | None = None, limit: int | None = None
) -> list[Component]:
    """Every version, oldest first; ``after``/``limit`` page through them (the web page)."""
    q = sa.select(Component).where(Component.namespace == namespace, Component.name == name)
    if after is not None:
        q = q.where(Component.version > after)
    if limit is not None:
        q = q.limit(limit)
    rows = list(session.scalars(q.order_by(Component.version)))
    if not rows and after is None:
        raise NotFound(f"no component named {namespace}/{name}")
    return rows


def list_aliases(session: Session, namespace: str, name: str) -> list[Alias]:
    return list(
        session.scalars(sa.select(Alias).where(Alias.namespace == namespace, Alias.name == name).order_by(Alias.alias))
    )


def set_alias(*, session: Session, namespace: str, name: str, alias: str, version: int) -> Alias:
    target = session.scalars(
        sa.select(Component).where(
            Component.namespace == namespace, Component.name == name, Component.version == version
        )
    ).first()
    if target is None:
        raise NotFound(f"{namespace}/{name} has no version {version}")
    if target.yanked_at is not None:
        raise NotFound(f"{namespace}/{name}@{version} is yanked; an alias cannot point at it")
    row = session.get(Alias, (namespace, name, alias))
    previous = row.version if row is not None else None
    if row is None:
        row = Alias(namespace=namespace, name=name, alias=alias, version=version)
        session.add(row)
    else:
        row.version = version
        row.updated_at = utcnow()
    session.flush()
    if previous != version:
        events.alias_moved(session, namespace, name, alias, version=version, previous=previous)
    return row


def delete_alias(*, session: Session, namespace: str, name: str, alias: str) -> None:
    row = session.get(Alias, (namespace, name, alias))
    if row is None:
        raise NotFound(f"{namespace}/{name} has no alias {alias!r}")
    previous = row.version
    session.delete(row)
    session.flush()
    events.alias_moved(session, namespace, name, alias, version=None, previous=previous)


def yank(*, session: Session, component: Component, reason: str) -> Component:
    was_yanked = component.yanked_at is not None
    if not was_yanked:
        component.yanked_at = utcnow()
    component.yank_reason = reason
    session.flush()
    if not was_yanked:
        events.version_yanked(session, component)
    return component


def unyank(*, session: Session, component: Component) -> Component:
    was_yanked = component.yanked_at is not None
    component.yanked_at = None
    component.yank_reason = None
    session.flush()
    if was_yanked:
        events.version_yanked(session, component)
    return component
