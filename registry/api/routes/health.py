from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter

from partsbin.registry.api.deps import ReadSessionDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness and database reachability")
def healthz(session: ReadSessionDep) -> dict[str, str]:
    # A database that cannot be reached raises here and is answered 503 JSON
    # (registry/errors.py); the pool's pre-ping reconnects once it is back.
    session.execute(sa.text("SELECT 1"))
    return {"status": "ok"}
