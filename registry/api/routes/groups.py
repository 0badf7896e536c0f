"""/groups: compatibility groups, each anchored by a frozen aux head."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from partsbin.registry.api.deps import ReadSessionDep, SettingsDep
from partsbin.registry.api.params import DigestPath, IdCursor, Limit
from partsbin.registry.api.responses import errors
from partsbin.registry.api.schemas import ComponentOut, GroupDetail, GroupOut, GroupPage
from partsbin.registry.crud.auto_evaluate import queued_in_group
from partsbin.registry.crud.compatible import count_members, list_groups
from partsbin.registry.crud.components import list_components
from partsbin.registry.db.models import Group
from partsbin.registry.errors import NotFound

router = APIRouter(prefix="/groups", tags=["compatibility"])


@router.get("", response_model=GroupPage, summary="Compatibility groups")
def groups(
    session: ReadSessionDep,
    settings: SettingsDep,
    cursor: Annotated[
        str | None, Query(pattern=r"^[0-9a-f]{64}$", description="the next_cursor of the previous page")
    ] = None,
    limit: Limit = None,
) -> GroupPage:
    rows, next_cursor = list_groups(session, cursor=cursor, limit=limit or settings.page_size)
    items = [
        GroupOut(
            id=g.anchor_digest,
            kind=g.kind,
            junction_channels=g.junction_channels,
            junction_layout=g.junction_layout,
            anchor=ComponentOut.of(g.anchor),
            members=n,
        )
        for g, n in rows
    ]
    return GroupPage(items=items, next_cursor=next_cursor)


@router.get(
    "/{group_id}",
    response_model=GroupDetail,
    summary="A group with its anchor head and members",
    responses=errors(404),
)
def group(
    group_id: DigestPath,
    session: ReadSessionDep,
    settings: SettingsDep,
    cursor: IdCursor = None,
    limit: Limit = None,
) -> GroupDetail:
    digest = group_id
    g = session.get(Group, digest)
    if g is None:
        raise NotFound(f"no group anchored by sha256:{digest}")
    page = list_components(session, group=digest, cursor=cursor, limit=limit or settings.page_size)
    return GroupDetail(
        id=g.anchor_digest,
        kind=g.kind,
        junction_channels=g.junction_channels,
        junction_layout=g.junction_layout,
        anchor=ComponentOut.of(g.anchor),
        members=count_members(session, digest),
        queued_evaluations=queued_in_group(session, digest),
        member_items=[ComponentOut.of(c) for c in page.items],
        next_cursor=page.next_cursor,
    )
