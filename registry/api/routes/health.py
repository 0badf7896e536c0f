from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter

from partsbin.registry.api.deps import ReadSessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness and database reachability")
def healthz(session: ReadSessionDep) -> dict[str, str]:
    session.execute(sa.text("SELECT 1"))
    return {"status": "ok"}
