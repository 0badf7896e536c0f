"""/metrics: Prometheus' text exposition of ``registry/metrics.py``.

Behind the same read permission as the API: with anonymous reads off, Prometheus
scrapes with a token (``authorization: {credentials_file: ...}`` in its scrape config).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics (text exposition format)", response_class=Response)
async def metrics(request: Request) -> Response:
    # The queue's gauges query the database: off the event loop.
    body = await run_in_threadpool(generate_latest, request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
