"""Compatibility groups: the list, and a group's page with its heatmap."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from partsbin.parts.names import InvalidName, parse_digest
from partsbin.registry.api.deps import ReadSessionDep, SettingsDep
from partsbin.registry.crud.auto_evaluate import queued_in_group
from partsbin.registry.crud.compatible import count_members, list_groups
from partsbin.registry.crud.components import list_components
from partsbin.registry.crud.evaluations import best_evaluation_grid, other_data
from partsbin.registry.db.models import Group
from partsbin.registry.errors import InvalidRequest, NotFound
from partsbin.registry.web.auth import web_principal
from partsbin.registry.web.heatmap import heatmap_svg
from partsbin.registry.web.render import PageRoute, id_cursor, page

router = APIRouter(route_class=PageRoute, include_in_schema=False, dependencies=[Depends(web_principal)])

#: Extractors (rows) and heads (columns) per heatmap page; larger groups page through both.
AXIS = 50


@router.get("/ui/groups")
def groups(request: Request, session: ReadSessionDep, settings: SettingsDep, cursor: str | None = None) -> Response:
    if cursor is not None:
        try:
            cursor = parse_digest(cursor)
        except InvalidName:
            raise InvalidRequest(f"invalid cursor {cursor!r}: follow the page's own links") from None
    rows, next_cursor = list_groups(session, cursor=cursor, limit=settings.page_size)
    return page(request, "groups.html", rows=rows, next_cursor=next_cursor, first_page=cursor is None)


@router.get("/ui/groups/{digest}")
def group(
    digest: str,
    request: Request,
    session: ReadSessionDep,
    settings: SettingsDep,
    rows: str | None = None,
    cols: str | None = None,
    cursor: str | None = None,
    data: str | None = None,
) -> Response:
    try:
        anchor = parse_digest(digest)
    except InvalidName as exc:
        raise InvalidRequest(str(exc)) from None
    g = session.get(Group, anchor)
    if g is None:
        raise NotFound(f"no group anchored by sha256:{anchor}")
    extractors = list_components(session, group=anchor, role="extractor", cursor=id_cursor(rows, "rows"), limit=AXIS)
    heads = list_components(session, group=anchor, role="head", cursor=id_cursor(cols, "cols"), limit=AXIS)
    if not heads.items and g.kind == "dcc":
        # One head for many architectures (§5.2): the shared DCC head is the task head; its
        # versions (update-head) are the columns.
        heads = list_components(session, group=anchor, role="aux-dcc", cursor=id_cursor(cols, "cols"), limit=AXIS)
    if data is not None:
        try:
            data = "sha256:" + parse_digest(data)
        except InvalidName as exc:
            raise InvalidRequest(f"data: {exc}") from None
    ext_ids, head_ids = [e.id for e in extractors.items], [h.id for h in heads.items]
    grid = best_evaluation_grid(session, ext_ids, head_ids, data_digest=data)
    others = other_data(session, ext_ids, head_ids)
    members = list_components(session, group=anchor, cursor=id_cursor(cursor, "cursor"), limit=settings.page_size)
    return page(
        request,
        "group.html",
        g=g,
        anchor=g.anchor,
        member_count=count_members(session, anchor),
        extractors=extractors,
        heads=heads,
        measured=len(grid),
        queued=queued_in_group(session, anchor),
        data=data,
        data_name=next((name for d, name, _ in others if d == data), None),
        others=others,
        heatmap=heatmap_svg(extractors.items, heads.items, grid) if extractors.items and heads.items else None,
        members=members,
        rows=rows,
        cols=cols,
        cursor=cursor,
    )
