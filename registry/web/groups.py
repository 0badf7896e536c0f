"""Compatibility groups: the list, and a group's page with its heatmap."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from partsbin.parts.names import InvalidName, parse_digest
from partsbin.registry.api.deps import ReadSessionDep, SettingsDep
from partsbin.registry.crud.auto_evaluate import queued_in_group
from partsbin.registry.crud.compatible import count_members, list_groups
from partsbin.registry.crud.components import Page, list_components
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


@dataclass
class _Axes:
    """What the heatmap's rows and columns are on this page of a group."""

    group: Group
    extractors: Page
    heads: Page
    data: str | None


def _axes(session: Session, digest: str, rows: str | None, cols: str | None, data: str | None) -> _Axes:
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
    return _Axes(g, extractors, heads, data)


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
    axes = _axes(session, digest, rows, cols, data)
    g = axes.group
    ext_ids, head_ids = [e.id for e in axes.extractors.items], [h.id for h in axes.heads.items]
    others = other_data(session, ext_ids, head_ids)
    members = list_components(
        session, group=g.anchor_digest, cursor=id_cursor(cursor, "cursor"), limit=settings.page_size
    )
    query = urlencode({k: v for k, v in (("rows", rows), ("cols", cols), ("data", axes.data)) if v is not None})
    return page(
        request,
        "group.html",
        g=g,
        anchor=g.anchor,
        member_count=count_members(session, g.anchor_digest),
        extractors=axes.extractors,
        heads=axes.heads,
        data=axes.data,
        data_name=next((name for d, name, _ in others if d == axes.data), None),
        others=others,
        # The heatmap (up to 2,500 linked cells, most of the page's bytes and build time at
        # scale: 740 kB, p99 108 ms at 100,000 components) is a fragment of its own, which
        # the page fetches (static/heatmap.js); the rest of the page answers first.
        heatmap_src=f"/ui/groups/{g.anchor_digest}/heatmap" + (f"?{query}" if query else ""),
        has_heatmap=bool(axes.extractors.items and axes.heads.items),
        members=members,
        rows=rows,
        cols=cols,
        cursor=cursor,
    )


@router.get("/ui/groups/{digest}/heatmap")
def group_heatmap(
    digest: str,
    request: Request,
    session: ReadSessionDep,
    rows: str | None = None,
    cols: str | None = None,
    data: str | None = None,
) -> Response:
    """The heatmap of one page of a group and its legend, as an HTML fragment."""
    axes = _axes(session, digest, rows, cols, data)
    ext, heads = axes.extractors.items, axes.heads.items
    grid = best_evaluation_grid(session, [e.id for e in ext], [h.id for h in heads], data_digest=axes.data)
    return page(
        request,
        "group_heatmap.html",
        heatmap=heatmap_svg(ext, heads, grid) if ext and heads else None,
        measured=len(grid),
        pairs=len(ext) * len(heads),
        queued=queued_in_group(session, axes.group.anchor_digest),
    )
