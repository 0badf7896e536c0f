"""/evaluations: measured recombinations (extractor + head on a data set)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi import Path as PathParam
from pydantic import BaseModel, Field

from partsbin.parts.names import InvalidName, parse_ref
from partsbin.registry.api.deps import PrincipalDep, ReadSessionDep, SessionDep, require_token
from partsbin.registry.crud.components import resolve_ref
from partsbin.registry.crud.evaluations import create_evaluation, get_evaluation, list_evaluations
from partsbin.registry.db.models import Component, Evaluation
from partsbin.registry.errors import APIError, Forbidden, InvalidRequest

router = APIRouter(prefix="/evaluations", tags=["evaluations"])


class EvaluationIn(BaseModel):
    extractor: str = Field(description="ref of the extractor")
    head: str = Field(description="ref of the head (task or aux)")
    dataset: str = Field(min_length=1, max_length=200)
    metric: str = Field(default="recombination_accuracy", max_length=64)
    value: float
    samples: int = Field(ge=1)
    bn_mode: Literal["batch", "running", "recalibrated"]
    batch_size: int | None = Field(default=None, ge=1)
    details: dict[str, Any] = Field(default_factory=dict)


class EvaluationOut(BaseModel):
    id: int
    extractor: str
    head: str
    dataset: str
    metric: str
    value: float
    samples: int
    bn_mode: str
    batch_size: int | None
    details: dict[str, Any]
    created_at: datetime


def _out(ev: Evaluation, ext: Component, head: Component) -> EvaluationOut:
    return EvaluationOut(
        id=ev.id,
        extractor=ext.ref,
        head=head.ref,
        dataset=ev.dataset,
        metric=ev.metric,
        value=ev.value,
        samples=ev.samples,
        bn_mode=ev.bn_mode,
        batch_size=ev.batch_size,
        details=ev.details or {},
        created_at=ev.created_at,
    )


def _resolve(session, ref: str) -> Component:
    try:
        return resolve_ref(session, parse_ref(ref))
    except InvalidName as exc:
        raise APIError(str(exc), status_code=422, code="invalid_name") from None


@router.post("", response_model=EvaluationOut, status_code=201, summary="Record a measured recombination")
def post(body: EvaluationIn, session: SessionDep, principal: PrincipalDep) -> EvaluationOut:
    require_token(principal, "posting evaluations")
    if principal.scope not in ("publish", "admin"):
        raise Forbidden("posting evaluations needs a publish or admin token")
    ext, head = _resolve(session, body.extractor), _resolve(session, body.head)
    if ext.role != "extractor":
        raise InvalidRequest(f"{ext.ref} is a {ext.role}, not an extractor")
    if head.role not in ("head", "aux-rp", "aux-dcc"):
        raise InvalidRequest(f"{head.ref} is a {head.role}, not a head")
    if body.metric.endswith("accuracy") and not 0.0 <= body.value <= 1.0:
        raise InvalidRequest(f"an accuracy lies in [0, 1], got {body.value}")
    ev = create_evaluation(
        session=session,
        extractor=ext,
        head=head,
        dataset=body.dataset,
        metric=body.metric,
        value=body.value,
        samples=body.samples,
        bn_mode=body.bn_mode,
        batch_size=body.batch_size,
        details=body.details,
        created_by=principal.token_id,
    )
    session.commit()
    return _out(ev, ext, head)


@router.get("", response_model=list[EvaluationOut], summary="Evaluations of an extractor, a head, or a pair")
def get(session: ReadSessionDep, extractor: str | None = None, head: str | None = None) -> list[EvaluationOut]:
    if extractor is None and head is None:
        raise InvalidRequest("give ?extractor=REF, ?head=REF or both")
    ext = _resolve(session, extractor) if extractor else None
    hd = _resolve(session, head) if head else None
    rows = list_evaluations(session, extractor_id=ext.id if ext else None, head_id=hd.id if hd else None)
    comps = {
        c.id: c
        for c in session.scalars(
            sa.select(Component).where(Component.id.in_({r.extractor_id for r in rows} | {r.head_id for r in rows}))
        )
    }
    return [_out(r, comps[r.extractor_id], comps[r.head_id]) for r in rows]


@router.get("/{evaluation_id}", response_model=EvaluationOut, summary="One evaluation")
def get_one(evaluation_id: Annotated[int, PathParam(ge=1, le=2**63 - 1)], session: ReadSessionDep) -> EvaluationOut:
    ev = get_evaluation(session, evaluation_id)
    comps = {
        c.id: c for c in session.scalars(sa.select(Component).where(Component.id.in_({ev.extractor_id, ev.head_id})))
    }
    return _out(ev, comps[ev.extractor_id], comps[ev.head_id])
