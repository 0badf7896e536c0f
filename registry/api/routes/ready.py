"""/readyz: whether this process can serve, i.e. reach its database and its blob storage.

``/healthz`` says the process is up (a restart will not help a registry whose database
is down); ``/readyz`` is what a load balancer or docker-compose's healthcheck should ask
before sending traffic.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from partsbin.registry.storage import StorageError

router = APIRouter(tags=["health"])
log = logging.getLogger("partsbin.registry")


def _check_database(request: Request) -> str | None:
    try:
        with request.app.state.read_sessionmaker() as session:
            session.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        # Anyone may ask: the answer names the part, the driver's message (host, socket
        # path, user) goes to the log.
        log.warning("readyz: the database does not answer: %s", exc)
        return f"database unreachable ({type(exc).__name__}; the registry's log has the details)"
    return None


def _check_storage(request: Request) -> str | None:
    try:
        request.app.state.storage.check()
    except StorageError as exc:
        log.warning("readyz: the blob storage does not answer: %s", exc)
        return "storage unreachable (the registry's log has the details)"
    return None


@router.get(
    "/readyz",
    summary="Readiness: the database and the blob storage answer",
    responses={503: {"description": "not ready; `checks` says which part failed"}},
)
async def readyz(request: Request) -> Any:
    database = await run_in_threadpool(_check_database, request)
    storage = await run_in_threadpool(_check_storage, request)
    checks = {"database": database or "ok", "storage": storage or "ok"}
    if database or storage:
        return JSONResponse(
            {
                "status": "unavailable",
                "checks": checks,
                "detail": "; ".join(filter(None, (database, storage))),
                "code": "not_ready",
            },
            status_code=503,
            headers={"X-Error-Code": "not_ready", "Retry-After": "5"},
        )
    return {"status": "ok", "checks": checks}
