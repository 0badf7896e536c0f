"""All routers, gathered in one place.

Every route but the probes (``/healthz``, ``/readyz``) resolves the caller first, so
switching anonymous reads off (``PARTSBIN_ANONYMOUS_READ=false``) covers every read
without each route opting in. FastAPI caches the dependency per request, so routes that
also take ``PrincipalDep`` do not authenticate twice. The caller's token id goes into
the request's log lines.
"""

from fastapi import APIRouter, Depends

from partsbin.registry.api.routes import (
    compatible,
    components,
    evaluations,
    groups,
    health,
    jobs,
    metrics,
    ready,
    tokens,
)
from partsbin.registry.instrumentation import logged_principal

api_router = APIRouter()
_guarded = APIRouter(dependencies=[Depends(logged_principal)])
for _module in (components, compatible, evaluations, groups, jobs, tokens, metrics):
    _guarded.include_router(_module.router)
api_router.include_router(_guarded)
api_router.include_router(health.router)
api_router.include_router(ready.router)
