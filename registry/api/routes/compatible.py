"""/compatible: components that recombine with a given head or extractor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from parts.names import InvalidName, parse_ref

from ...crud.components import resolve_ref
from ...crud.compatible import compatible_with, target_anchors
from ...errors import APIError, InvalidRequest
from ..deps import SessionDep, SettingsDep
from ..schemas import CompatibleItem, CompatiblePage, ComponentOut, Reason

router = APIRouter(tags=["compatibility"])


@router.get("/compatible", response_model=CompatiblePage, summary="Extractors for a head, or heads for an extractor")
def compatible(
    session: SessionDep,
    settings: SettingsDep,
    head: Annotated[str | None, Query(description="ref of a task head or aux head (URL-encoded)")] = None,
    extractor: Annotated[str | None, Query(description="ref of an extractor (URL-encoded)")] = None,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> CompatiblePage:
    if (head is None) == (extractor is None):
        raise InvalidRequest("give exactly one of ?head=REF or ?extractor=REF")
    text = head if head is not None else extractor
    try:
        ref = parse_ref(text or "")
    except InvalidName as exc:
        raise APIError(str(exc), status_code=422, code="invalid_name") from None
    target = resolve_ref(session, ref)
    if head is not None and target.role == "extractor":
        raise InvalidRequest(f"{target.ref} is an extractor; ask with ?extractor=")
    if extractor is not None and target.role != "extractor":
        raise InvalidRequest(f"{target.ref} is a {target.role}; ask with ?head=")
    if cursor is not None and not (len(cursor) > 1 and cursor[0] in "md" and cursor[1:].isdigit()):
        raise InvalidRequest(f"invalid cursor {cursor!r}: pass back the next_cursor of the previous page")
    refs = target_anchors(session, target)
    matches, next_cursor = compatible_with(session, target, cursor=cursor, limit=limit or settings.page_size, anchors=list(refs))
    items = []
    for m in matches:
        reasons = []
        ev = m.evaluation
        if ev is not None:
            reasons.append(Reason(kind="measured", detail=f"recombination accuracy {ev.value:.1%} on {ev.samples} images of {ev.dataset} (BatchNorm: batch statistics)"))
        reasons += [
            Reason(kind="declared", detail="trained against the same frozen aux head", anchor=f"sha256:{a}", anchor_ref=refs.get(a))
            for a in m.anchors
        ]
        items.append(
            CompatibleItem(
                component=ComponentOut.of(m.component), role=m.component.role, reasons=reasons,
                status="measured" if ev is not None else "declared, unmeasured", measured_accuracy=ev.value if ev is not None else None,
            )  # fmt: skip
        )
    return CompatiblePage(query=target.ref, items=items, next_cursor=next_cursor)
