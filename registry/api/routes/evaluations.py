"""/evaluations: measured recombinations (extractor + head on a data set)."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query

from partsbin.parts.names import InvalidName, parse_ref
from partsbin.registry.api.deps import ReadSessionDep, RequireToken, SessionDep
from partsbin.registry.api.params import IdPath, RefFilter
from partsbin.registry.api.responses import errors
from partsbin.registry.api.schemas import EvaluationIn, EvaluationOut
from partsbin.registry.crud.components import resolve_ref
from partsbin.registry.crud.evaluations import create_evaluation, get_evaluation, list_evaluations, trust_of
from partsbin.registry.crud.jobs import leased_job
from partsbin.registry.crud.tokens import Principal
from partsbin.registry.db.models import Component, Evaluation
from partsbin.registry.errors import APIError, InvalidRequest

router = APIRouter(prefix="/evaluations", tags=["evaluations"])


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
        classes=ev.classes,
        details=ev.details or {},
        created_at=ev.created_at,
        posted_by=ev.created_by,
        trust=ev.trust,  # type: ignore[arg-type]
        job_id=ev.job_id,
        data_digest=ev.data_digest,
        own_test=ev.own_test,
        finetune_steps=_finetune_steps(ev.details or {}),
    )


def _finetune_steps(details: dict[str, Any]) -> int | None:
    # Checked at posting; a value stored before that check is not answered as a count.
    steps = details.get("finetune_steps")
    return steps if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 0 else None


def _resolve(session, ref: str) -> Component:
    try:
        return resolve_ref(session, parse_ref(ref))
    except InvalidName as exc:
        raise APIError(str(exc), status_code=422, code="invalid_name") from None


@router.post(
    "",
    response_model=EvaluationOut,
    status_code=201,
    summary="Record a measured recombination",
    responses=errors(404, 409),
)
def post(
    body: EvaluationIn,
    session: SessionDep,
    principal: Annotated[
        Principal,
        Depends(
            RequireToken(
                "posting evaluations", ("publish", "admin"), "posting evaluations needs a publish or admin token"
            )
        ),
    ],
) -> EvaluationOut:
    ext, head = _resolve(session, body.extractor), _resolve(session, body.head)
    if ext.role != "extractor":
        raise InvalidRequest(f"{ext.ref} is a {ext.role}, not an extractor")
    if head.role not in ("head", "aux-rp", "aux-dcc"):
        raise InvalidRequest(f"{head.ref} is a {head.role}, not a head")
    if body.metric.endswith("accuracy") and not 0.0 <= body.value <= 1.0:
        raise InvalidRequest(f"an accuracy lies in [0, 1], got {body.value}")
    job = None
    if (body.job_id is None) != (body.lease_id is None):
        raise InvalidRequest("give job_id and lease_id together (a worker posting for a job it holds), or neither")
    if body.job_id is not None and body.lease_id is not None:
        # The lease proves the poster is the worker holding the job right now.
        job = leased_job(session, body.job_id, body.lease_id)
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
        trust=trust_of(session, principal, ext, head, job),
        job_id=job.id if job is not None else None,
        classes=body.classes,
        data_digest=body.data_digest,
    )
    session.commit()
    return _out(ev, ext, head)


@router.get(
    "",
    response_model=list[EvaluationOut],
    summary="Evaluations of an extractor, a head, or a pair",
    responses=errors(404),
)
def get(
    session: ReadSessionDep,
    extractor: Annotated[RefFilter | None, Query(max_length=300)] = None,
    head: Annotated[RefFilter | None, Query(max_length=300)] = None,
) -> list[EvaluationOut]:
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


@router.get("/{evaluation_id:id}", response_model=EvaluationOut, summary="One evaluation", responses=errors(404))
def get_one(evaluation_id: IdPath, session: ReadSessionDep) -> EvaluationOut:
    ev = get_evaluation(session, evaluation_id)
    comps = {
        c.id: c for c in session.scalars(sa.select(Component).where(Component.id.in_({ev.extractor_id, ev.head_id})))
    }
    return _out(ev, comps[ev.extractor_id], comps[ev.head_id])
