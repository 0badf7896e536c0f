"""/paths: ways to connect an extractor to a head, direct or through bridges (crud/paths.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from partsbin.parts.names import InvalidName, Ref, parse_ref
from partsbin.registry.api.deps import SettingsDep
from partsbin.registry.api.params import IdCursor, Limit, RefStr
from partsbin.registry.api.responses import errors
from partsbin.registry.api.schemas import PathOut, PathsOut, PathStep
from partsbin.registry.crud.components import resolve_ref
from partsbin.registry.crud.paths import Path, find_paths
from partsbin.registry.errors import APIError, InvalidRequest

router = APIRouter(tags=["compatibility"])


@router.get(
    "/paths",
    response_model=PathsOut,
    summary="Ways from an extractor to a head: direct, or through bridges; best first",
    responses=errors(404),
)
async def paths(
    request: Request,
    settings: SettingsDep,
    extractor: Annotated[RefStr, Query(description="ref of the extractor (URL-encoded)")],
    head: Annotated[RefStr, Query(description="ref of the head (URL-encoded)")],
    max_bridges: Annotated[int | None, Query(ge=0, le=8, description="longest chain (default: the registry's)")] = None,
    cursor: IdCursor = None,
    limit: Limit = None,
) -> PathsOut:
    try:
        ext_ref, head_ref = parse_ref(extractor), parse_ref(head)
    except InvalidName as exc:
        raise APIError(str(exc), status_code=422, code="invalid_name") from None
    longest = settings.max_bridges if max_bridges is None else min(max_bridges, settings.max_bridges)
    page = (cursor or 0, limit or settings.page_size)
    return await run_in_threadpool(_answer, request.app.state.read_sessionmaker, ext_ref, head_ref, longest, page)


def _answer(
    factory: sessionmaker[Session], ext_ref: Ref, head_ref: Ref, max_bridges: int, page: tuple[int, int]
) -> PathsOut:
    with factory() as session:
        ext, hd = resolve_ref(session, ext_ref), resolve_ref(session, head_ref)
        if ext.role != "extractor":
            raise InvalidRequest(f"{ext.ref} is a {ext.role}, not an extractor")
        if hd.role not in ("head", "aux-rp", "aux-dcc"):
            raise InvalidRequest(f"{hd.ref} is a {hd.role}, not a head")
        found = find_paths(session, ext, hd, max_bridges=max_bridges)
        start, size = page
        shown = found[start : start + size]
        return PathsOut(
            extractor=ext.ref,
            head=hd.ref,
            max_bridges=max_bridges,
            total=len(found),
            paths=[_out(p) for p in shown],
            next_cursor=str(start + size) if start + size < len(found) else None,
        )


def _out(p: Path) -> PathOut:
    ev = p.evaluation
    status: Literal["measured", "unmeasured", "measured: not compatible"] = (
        "unmeasured" if ev is None else ("measured: not compatible" if p.at_chance else "measured")
    )
    return PathOut(
        kind=p.kind,  # type: ignore[arg-type]
        bridges=[b.ref for b in p.bridges],
        via=p.via,
        steps=[
            PathStep(
                kind=s.kind,  # type: ignore[arg-type]
                why=s.why,
                component=s.component.ref if s.component is not None else None,
                digest=f"sha256:{s.component.digest}" if s.component is not None else None,
                anchor=s.anchor,
            )
            for s in p.steps
        ],
        status=status,
        composable=p.composable,
        measured_accuracy=ev.value if ev is not None else None,
        evaluation_id=ev.id if ev is not None else None,
    )
