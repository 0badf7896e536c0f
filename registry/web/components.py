"""The component list (``/``), a component's page, its file, and digests to pages."""

from __future__ import annotations

from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from partsbin.parts.card import HEAD_ROLES, Role
from partsbin.parts.lineage import relations_of
from partsbin.parts.names import InvalidName, Ref, parse_digest
from partsbin.registry.api.deps import ReadSessionDep, SettingsDep, StorageDep, check_part
from partsbin.registry.api.files import serve_file
from partsbin.registry.api.routes.compatible import compatible_page
from partsbin.registry.crud import components as crud
from partsbin.registry.crud.compatible import target_anchors
from partsbin.registry.crud.evaluations import list_evaluations
from partsbin.registry.crud.lineage import lineage_of
from partsbin.registry.db.models import Component
from partsbin.registry.errors import InvalidRequest
from partsbin.registry.web.auth import web_principal
from partsbin.registry.web.graph import lineage_svg
from partsbin.registry.web.render import DbInt, PageRoute, id_cursor, page
from partsbin.registry.web.tables import evaluation_rows

router = APIRouter(route_class=PageRoute, include_in_schema=False, dependencies=[Depends(web_principal)])

ROLES = get_args(Role)
FILTERS = ("role", "arch", "group", "dataset", "namespace", "tag", "q")


@router.get("/")
def components(
    request: Request,
    session: ReadSessionDep,
    settings: SettingsDep,
    role: str | None = None,
    arch: str | None = None,
    group: str | None = None,
    dataset: str | None = None,
    namespace: str | None = None,
    tag: str | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    cursor: str | None = None,
) -> Response:
    raw = zip(FILTERS, (role, arch, group, dataset, namespace, tag, q), strict=True)
    given = {k: v.strip() for k, v in raw if v and v.strip()}
    try:
        anchor = parse_digest(given["group"]) if "group" in given else None
    except InvalidName as exc:
        raise InvalidRequest(f"group: {exc}") from None
    result = crud.list_components(
        session,
        role=given.get("role"),
        arch=given.get("arch"),
        group=anchor,
        dataset=given.get("dataset"),
        namespace=given.get("namespace"),
        tag=given.get("tag"),
        q=given.get("q"),
        cursor=id_cursor(cursor, "cursor"),
        limit=settings.page_size,
    )
    return page(
        request,
        "components.html",
        items=result.items,
        next_cursor=result.next_cursor,
        filters=given,
        roles=ROLES,
        first_page=cursor is None,
    )


def _component_page(request: Request, session: Any, c: Component, params: dict[str, str | None]) -> Response:
    settings = request.app.state.settings
    versions_after = id_cursor(params.get("versions_after"), "versions_after")
    versions = crud.list_versions(session, c.namespace, c.name, after=versions_after, limit=settings.page_size + 1)
    more_versions = len(versions) > settings.page_size
    versions = versions[: settings.page_size]
    aliases: dict[int, list[str]] = {}
    for a in crud.list_aliases(session, c.namespace, c.name):
        aliases.setdefault(a.version, []).append(a.alias)

    compatible = None
    compat_cursor = params.get("compat_cursor")
    if compat_cursor is not None and not (
        len(compat_cursor) > 1
        and compat_cursor[0] in "md"
        and compat_cursor[1:].isascii()
        and compat_cursor[1:].isdigit()
    ):
        raise InvalidRequest(f"invalid compat_cursor {compat_cursor!r}: follow the page's own links")
    if c.role == "extractor" or c.role in HEAD_ROLES:
        compatible = compatible_page(session, c, cursor=compat_cursor, limit=settings.page_size)

    evals_after = id_cursor(params.get("evals_after"), "evals_after")
    evals = list_evaluations(
        session, extractor_id=c.id, head_id=c.id, either=True, after=evals_after, limit=settings.page_size + 1
    )
    more_evals = len(evals) > settings.page_size
    evals = evals[: settings.page_size]

    graph = lineage_of(session, c)
    base = str(request.base_url).rstrip("/")
    return page(
        request,
        "component.html",
        c=c,
        card=c.card,
        versions=versions,
        more_versions=more_versions,
        aliases=aliases,
        anchors=target_anchors(session, c),
        compatible=compatible,
        evaluations=evaluation_rows(session, evals),
        more_evals=more_evals,
        lineage=graph,
        lineage_svg=lineage_svg(graph),
        relations=relations_of(c.card),
        snippet=_snippet(base, c, compatible),
        base_url=base,
    )


def _snippet(base: str, c: Component, compatible: Any) -> str:
    """Copy-ready code: assemble with the best compatible part, or pull what cannot be assembled."""
    first = compatible.items[0].component.ref if compatible is not None and compatible.items else None
    if c.role == "extractor" and first:
        line = f'model = registry.assemble("{c.ref}", "{first}")'
    elif c.role in HEAD_ROLES and first:
        line = f'model = registry.assemble("{first}", "{c.ref}")'
    else:
        line = f'component = registry.pull("{c.ref}")'
    return "\n".join(["from partsbin import Registry", "", f'registry = Registry("{base}")', line])


def _paging(request: Request) -> dict[str, str | None]:
    return {k: request.query_params.get(k) for k in ("versions_after", "compat_cursor", "evals_after")}


@router.get("/ui/components/{ns}/{name}")
def component_latest(ns: str, name: str, request: Request, session: ReadSessionDep) -> Response:
    ref = Ref(kind="latest", namespace=check_part(ns, "namespace"), name=check_part(name, "name"))
    return _component_page(request, session, crud.resolve_ref(session, ref), _paging(request))


@router.get("/ui/components/{ns}/{name}/versions/{version}")
def component_version(ns: str, name: str, version: DbInt, request: Request, session: ReadSessionDep) -> Response:
    ref = Ref(kind="version", namespace=check_part(ns, "namespace"), name=check_part(name, "name"), version=version)
    return _component_page(request, session, crud.resolve_ref(session, ref), _paging(request))


@router.get("/ui/components/{ns}/{name}/versions/{version}/file")
def component_file(ns: str, name: str, version: DbInt, request: Request, storage: StorageDep) -> Response:
    """The download link of the page: the API's file route, but honouring the sign-in cookie
    (and, like it, holding no database connection while the bytes stream)."""
    ref = Ref(kind="version", namespace=check_part(ns, "namespace"), name=check_part(name, "name"), version=version)
    return serve_file(
        request, request.app.state.read_sessionmaker, lambda session: crud.resolve_ref(session, ref), storage
    )


@router.get("/ui/by-digest/{digest}")
def by_digest(digest: str, session: ReadSessionDep) -> Response:
    try:
        hex_ = parse_digest(digest)
    except InvalidName as exc:
        raise InvalidRequest(str(exc)) from None
    c = crud.resolve_ref(session, Ref(kind="digest", digest=hex_))
    return RedirectResponse(f"/ui/components/{c.namespace}/{c.name}/versions/{c.version}", status_code=303)
