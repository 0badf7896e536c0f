from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process is up and serving (the database is /readyz's business)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
