"""/groups: compatibility groups, each anchored by a frozen aux head."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from partsbin.parts.names import InvalidName, parse_digest
from partsbin.registry.api.deps import ReadSessionDep, SettingsDep
from partsbin.registry.api.schemas import ComponentOut, GroupDetail, GroupOut, GroupPage
from partsbin.registry.crud.compatible import count_members, list_groups
from partsbin.registry.crud.components import list_components
from partsbin.registry.db.models import Group
from partsbin.registry.errors import APIError, NotFound

router = APIRouter(prefix="/groups", tags=["compatibility"])


@router.get("", response_model=GroupPage, summary="Compatibility groups")
def groups(
    session: ReadSessionDep,
    settings: SettingsDep,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> GroupPage:
    rows, next_cursor = list_groups(session, cursor=cursor, limit=limit or settings.page_size)
    items = [
        GroupOut(
            id=g.anchor_digest,
            kind=g.kind,
            junction_channels=g.junction_channels,
            anchor=ComponentOut.of(g.anchor),
            members=n,
        )
        for g, n in rows
    ]
    return GroupPage(items=items, next_cursor=next_cursor)


@router.get("/{group_id}", response_model=GroupDetail, summary="A group with its anchor head and members")
def group(
    group_id: str,
    session: ReadSessionDep,
    settings: SettingsDep,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> GroupDetail:
    try:
        digest = parse_digest(group_id)
    except InvalidName as exc:
        raise APIError(str(exc), status_code=422, code="invalid_name") from None
    g = session.get(Group, digest)
    if g is None:
        raise NotFound(f"no group anchored by sha256:{digest}")
    if cursor is not None and not cursor.isdigit():
        raise APIError(f"invalid cursor {cursor!r}", status_code=422, code="invalid_request")
    page = list_components(
        session, group=digest, cursor=int(cursor) if cursor else None, limit=limit or settings.page_size
    )
    return GroupDetail(
        id=g.anchor_digest,
        kind=g.kind,
        junction_channels=g.junction_channels,
        anchor=ComponentOut.of(g.anchor),
        members=count_members(session, digest),
        member_items=[ComponentOut.of(c) for c in page.items],
        next_cursor=page.next_cursor,
    )
