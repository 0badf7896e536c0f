"""An evaluation's page: what a heatmap cell or a measured reason links to."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from partsbin.registry.api.deps import ReadSessionDep
from partsbin.registry.crud.evaluations import get_evaluation
from partsbin.registry.web.auth import web_principal
from partsbin.registry.web.render import DbInt, PageRoute, page
from partsbin.registry.web.tables import evaluation_rows

router = APIRouter(route_class=PageRoute, include_in_schema=False, dependencies=[Depends(web_principal)])


@router.get("/ui/evaluations/{evaluation_id}")
def evaluation(evaluation_id: DbInt, request: Request, session: ReadSessionDep) -> Response:
    (row,) = evaluation_rows(session, [get_evaluation(session, evaluation_id)])
    shared = sorted(
        set(row.extractor.card.get("compat", {}).get("anchors", []))
        & set(row.head.card.get("compat", {}).get("anchors", []))
    )
    return page(request, "evaluation.html", row=row, ev=row.ev, shared_anchors=shared)
