"""/compatible: components that recombine with a given head or extractor."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from partsbin.parts.names import InvalidName, Ref, parse_ref
from partsbin.registry.api.deps import SettingsDep
from partsbin.registry.api.params import Limit, RefStr
from partsbin.registry.api.responses import errors
from partsbin.registry.api.schemas import CompatibleItem, CompatiblePage, ComponentOut, Reason
from partsbin.registry.crud.bridged import bridged_matches
from partsbin.registry.crud.compatible import compatible_with, target_anchors
from partsbin.registry.crud.components import resolve_ref
from partsbin.registry.db.models import Component, Evaluation
from partsbin.registry.errors import APIError, InvalidRequest

router = APIRouter(tags=["compatibility"])


@router.get(
    "/compatible",
    response_model=CompatiblePage,
    summary="Extractors for a head, or heads for an extractor",
    responses=errors(404),
)
async def compatible(
    request: Request,
    settings: SettingsDep,
    head: Annotated[RefStr | None, Query(description="ref of a task head or aux head (URL-encoded)")] = None,
    extractor: Annotated[RefStr | None, Query(description="ref of an extractor (URL-encoded)")] = None,
    cursor: Annotated[
        str | None, Query(pattern=r"^[mdn][0-9]{1,18}$", description="the next_cursor of the previous page")
    ] = None,
    limit: Limit = None,
) -> Response:
    if (head is None) == (extractor is None):
        raise InvalidRequest("give exactly one of ?head=REF or ?extractor=REF")
    text = head if head is not None else extractor
    try:
        ref = parse_ref(text or "")
    except InvalidName as exc:
        raise APIError(str(exc), status_code=422, code="invalid_name") from None
    # The lookup, its queries and the JSON rendering run in one worker-thread hop. As a
    # sync route with a session dependency this took four hops (dependency in, route,
    # dependency out, and FastAPI's re-validation of the page on the event loop), and on
    # an otherwise idle machine each hop waits for a sleeping thread to be scheduled.
    page = await run_in_threadpool(
        _page,
        request.app.state.read_sessionmaker,
        ref,
        want_extractors=head is not None,
        cursor=cursor,
        limit=limit or settings.page_size,
    )
    return Response(page, media_type="application/json")


def _page(factory: sessionmaker[Session], ref: Ref, *, want_extractors: bool, cursor: str | None, limit: int) -> bytes:
    with factory() as session:
        target = resolve_ref(session, ref)
        if want_extractors and target.role == "extractor":
            raise InvalidRequest(f"{target.ref} is an extractor; ask with ?extractor=")
        if not want_extractors and target.role != "extractor":
            raise InvalidRequest(f"{target.ref} is a {target.role}; ask with ?head=")
        return compatible_page(session, target, cursor=cursor, limit=limit).model_dump_json().encode()


def compatible_page(session: Session, target: Component, *, cursor: str | None, limit: int) -> CompatiblePage:
    """One page of what recombines with ``target``, each with its reasons: the API's
    answer, and what the component's web page lists."""
    refs = target_anchors(session, target)
    matches, next_cursor = compatible_with(session, target, cursor=cursor, limit=limit, anchors=list(refs))
    items = []
    for m in matches:
        reasons = []
        ev = m.evaluation
        if ev is not None:
            reasons.append(_measured(ev, "measured", at_chance=m.at_chance))
        reasons += [
            Reason(kind="declared", detail=_declared(m.component), anchor=f"sha256:{a}", anchor_ref=refs.get(a))
            for a in m.anchors
        ]
        if m.third_party is not None:
            reasons.append(_measured(m.third_party, "third-party"))
        status: Literal["measured", "declared, unmeasured", "measured: not compatible"] = (
            "declared, unmeasured" if ev is None else ("measured: not compatible" if m.at_chance else "measured")
        )
        items.append(
            CompatibleItem(
                component=ComponentOut.of(m.component),
                role=m.component.role,
                reasons=reasons,
                status=status,
                measured_accuracy=ev.value if ev is not None else None,
                evaluation_id=ev.id if ev is not None else None,
            )
        )
    if next_cursor is None:
        # After the direct matches: what meets the target through one bridge (/paths has them all).
        listed = {i.component.digest for i in items}
        for other, bridge in bridged_matches(session, target, list(refs), limit=limit):
            if f"sha256:{other.digest}" in listed or other.id == target.id:
                continue
            items.append(
                CompatibleItem(
                    component=ComponentOut.of(other),
                    role=other.role,
                    reasons=[Reason(kind="declared", detail=f"through {bridge.role} {bridge.ref} (a bridge)")],
                    status="declared, unmeasured",
                    via=[bridge.ref],
                )
            )
    return CompatiblePage(query=target.ref, items=items, next_cursor=next_cursor)


def _declared(component: Component) -> str:
    """Why a shared anchor makes two parts compatible, in the words of how they were trained:
    a joint run learnt the aux head together; an incremental one trained against it frozen."""
    scheme = (component.card.get("compat") or {}).get("scheme")
    if scheme == "joint":
        return "trained jointly with the same aux head"
    if scheme == "incremental":
        return "trained against the same aux head, frozen"
    return "trained with the same aux head"


def _measured(ev: Evaluation, kind: Literal["measured", "third-party"], at_chance: bool = False) -> Reason:
    # The extractor and head of one network measure its own task, not a recombination.
    what = "own-task accuracy" if (ev.details or {}).get("own_task") else "recombination accuracy"
    detail = f"{what} {ev.value:.1%} on {ev.samples} images of {ev.dataset} (BatchNorm: batch statistics)"
    if at_chance:
        detail += ": at chance level (its 95% interval reaches chance), so not compatible"
    if kind == "third-party":
        detail = "posted by a token that does not own these namespaces, not used for ranking: " + detail
    return Reason(kind=kind, detail=detail, evaluation_id=ev.id, trust=ev.trust)  # type: ignore[arg-type]
