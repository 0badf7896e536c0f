"""All routers, gathered in one place.

Every route but the probes (``/healthz``, ``/readyz``) resolves the caller first, so
switching anonymous reads off (``PARTSBIN_ANONYMOUS_READ=false``) covers every read
without each route opting in. FastAPI caches the dependency per request, so routes that
also take ``PrincipalDep`` do not authenticate twice. The caller's token id goes into
the request's log lines. Every route refuses query parameters it does not declare. The error
answers every operation can give are documented here once (``api/responses.py``).
"""

from fastapi import APIRouter, Depends

from partsbin.registry.api.query import reject_unknown_query
from partsbin.registry.api.responses import COMMON_ERRORS, GUARDED_ERRORS
from partsbin.registry.api.routes import (
    archs,
    compatible,
    components,
    datasets,
    evaluations,
    groups,
    health,
    jobs,
    metrics,
    paths,
    ready,
    tokens,
    uploads,
    webhooks,
    whoami,
)
from partsbin.registry.instrumentation import logged_principal

api_router = APIRouter(dependencies=[Depends(reject_unknown_query)], responses=COMMON_ERRORS)
_guarded = APIRouter(dependencies=[Depends(logged_principal)], responses=GUARDED_ERRORS)
for _module in (
    components,
    datasets,
    uploads,
    compatible,
    paths,
    evaluations,
    groups,
    jobs,
    tokens,
    webhooks,
    whoami,
    metrics,
    archs,
):
    _guarded.include_router(_module.router)
api_router.include_router(_guarded)
api_router.include_router(health.router)
api_router.include_router(ready.router)
