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
from partsbin.registry.crud.components import Page, list_components, list_member_ids
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


def _group(session: Session, digest: str) -> Group:
    try:
        anchor = parse_digest(digest)
    except InvalidName as exc:
        raise InvalidRequest(str(exc)) from None
    g = session.get(Group, anchor)
    if g is None:
        raise NotFound(f"no group anchored by sha256:{anchor}")
    return g


def _data(data: str | None) -> str | None:
    if data is None:
        return None
    try:
        return "sha256:" + parse_digest(data)
    except InvalidName as exc:
        raise InvalidRequest(f"data: {exc}") from None


def _head_role(session: Session, g: Group) -> str:
    """The columns' role: task heads; in a group that has none but is a DCC group, the
    shared DCC head (one head for many architectures, §5.2), whose versions
    (update-head) are the columns."""
    if g.kind == "dcc" and not list_member_ids(session, group=g.anchor_digest, role="head", limit=1)[0]:
        return "aux-dcc"
    return "head"


def _axes(session: Session, digest: str, rows: str | None, cols: str | None, data: str | None) -> _Axes:
    g = _group(session, digest)
    anchor = g.anchor_digest
    extractors = list_components(session, group=anchor, role="extractor", cursor=id_cursor(rows, "rows"), limit=AXIS)
    heads = list_components(
        session, group=anchor, role=_head_role(session, g), cursor=id_cursor(cols, "cols"), limit=AXIS
    )
    return _Axes(g, extractors, heads, _data(data))


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
    g = _group(session, digest)
    anchor, data = g.anchor_digest, _data(data)
    # The page shows no extractor or head of the heatmap by name (its fragment does):
    # their ids are enough here, for the data it can show instead and the paging links,
    # and loading 100 rows for them was most of the page's queries' time.
    ext_ids, more_rows = list_member_ids(
        session, group=anchor, role="extractor", cursor=id_cursor(rows, "rows"), limit=AXIS
    )
    head_ids, more_cols = list_member_ids(
        session, group=anchor, role=_head_role(session, g), cursor=id_cursor(cols, "cols"), limit=AXIS
    )
    others = other_data(session, ext_ids, head_ids)
    members = list_components(session, group=anchor, cursor=id_cursor(cursor, "cursor"), limit=settings.page_size)
    query = urlencode({k: v for k, v in (("rows", rows), ("cols", cols), ("data", data)) if v is not None})
    return page(
        request,
        "group.html",
        g=g,
        anchor=g.anchor,
        member_count=count_members(session, anchor),
        more_rows=more_rows,
        more_cols=more_cols,
        data=data,
        data_name=next((name for d, name, _ in others if d == data), None),
        others=others,
        # The heatmap (up to 2,500 linked cells, most of the page's bytes and build time at
        # scale: 740 kB, p99 108 ms at 100,000 components) is a fragment of its own, which
        # the page fetches (static/heatmap.js); the rest of the page answers first.
        heatmap_src=f"/ui/groups/{anchor}/heatmap" + (f"?{query}" if query else ""),
        has_heatmap=bool(ext_ids and head_ids),
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
