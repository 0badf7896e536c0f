"""Builds the FastAPI application.

How concurrency is bounded (issue: the registry locked up under 64-256 concurrent
clients mixing downloads with other reads, answering 500 "QueuePool limit of size 5
overflow 10 reached" and then nothing for two minutes). The cause, found in FastAPI
0.165 and Starlette:

1. A ``yield`` dependency of the default ("request") scope is closed only after the
   response has been *sent* (``fastapi.routing.request_response``: the request stack
   exits after ``await response(...)``). The session dependency therefore kept its
   pooled connection while a ``FileResponse`` streamed the file.
2. ``FileResponse`` reads every chunk through ``anyio.to_thread.run_sync``, i.e. it needs
   a token of AnyIO's default thread limiter (40) for each chunk; so do sync routes and
   sync dependencies.
3. With 150 concurrent downloads, the 15 connections (pool 5 + overflow 10) belonged to
   streaming responses waiting for thread tokens, while all 40 tokens belonged to route
   functions blocked in ``QueuePool`` waiting for a connection: a deadlock broken only by
   the 30 s pool timeout (the 500s), over and over for the queued backlog, which is why
   the registry stayed unresponsive long after the clients had gone.

What keeps it from happening again:

- sessions are dependencies of the "function" scope (``api/deps.py``): closed when the
  route returns, before the response is sent; file routes look the component up in a
  session of their own and close it before the blob is opened (``api/files.py``);
- the pool has ``db_pool_size`` connections and no overflow, never fewer than the
  ``worker_threads`` of the thread limiter (checked in ``config.py``), so a thread never
  waits for a connection, and a connection holder never waits for a thread (closing a
  session runs outside the limiter, as FastAPI does);
- at most ``max_concurrent_requests`` are handled at once; the rest wait up to
  ``queue_timeout`` and are then answered 503 with ``Retry-After``
  (``middleware.AdmissionMiddleware``), and a connection not free within
  ``db_pool_timeout`` is a 503 too (``errors.py``), never an unbounded queue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI

from partsbin import __version__
from partsbin.registry.api.deps import token_required_operations
from partsbin.registry.api.handlers import UnexpectedErrorMiddleware, install_handlers
from partsbin.registry.api.routes import api_router, docs
from partsbin.registry.config import Settings
from partsbin.registry.db.session import make_engine, make_read_sessionmaker, make_sessionmaker
from partsbin.registry.instrumentation import InstrumentationMiddleware
from partsbin.registry.metrics import Metrics
from partsbin.registry.middleware import AdmissionMiddleware, RequestIDMiddleware
from partsbin.registry.staging import StagingArea
from partsbin.registry.storage import make_storage
from partsbin.registry.web import mount_web
from partsbin.registry.webhooks.dispatch import Dispatcher, DispatchSettings

__all__ = ["create_app"]


_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _integer_bounds(node: Any) -> None:
    """Write the bounds of integer schemas as integers. FastAPI's OpenAPI models hold
    them as floats, so the document said ``"maximum": 9.223372036854776e18`` (2^63, one
    past the bound) for ``le=2**63 - 1``, and ``1.0`` for ``ge=1``."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in _BOUNDS:
                value = node.get(key)
                if isinstance(value, float) and value.is_integer():
                    node[key] = int(value)
        for child in node.values():
            _integer_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _integer_bounds(child)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with integer bounds written as integers (:func:`_integer_bounds`)
    and the token marked optional where it is: every guarded operation but those that
    declare ``RequireToken`` (``api/deps.py``) lists ``{}`` beside the bearer scheme
    (OpenAPI's "no credentials also accepted"), since reads need no token while
    ``PARTSBIN_ANONYMOUS_READ=true``."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _integer_bounds(schema)
        required = token_required_operations(app.routes)
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                if (
                    isinstance(operation, dict)
                    and operation.get("security") == [{"token": []}]
                    and (path, method) not in required
                ):
                    operation["security"] = [{"token": []}, {}]
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = make_engine(
        settings.resolved_database_url, pool_size=settings.pool_size, pool_timeout=settings.db_pool_timeout
    )
    staging = StagingArea(settings.staging_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The limiter belongs to the event loop the server runs, so it is set here.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        # Uploads cut off by a crash leave their staged files behind: remove those of
        # every registry process that is no longer running, then claim our own folder.
        await anyio.to_thread.run_sync(staging.open)
        if dispatcher is not None:
            dispatcher.start()
        try:
            yield
        finally:
            if dispatcher is not None:
                await anyio.to_thread.run_sync(dispatcher.stop)
            staging.close()
            engine.dispose()

    app = FastAPI(
        title="partsbin registry",
        version=__version__,
        description="Registry of neural-network components made compatible by training (Gygli et al., AAAI 2021).",
        lifespan=lifespan,
        # Served by routes/docs.py: behind PARTSBIN_ANONYMOUS_READ, with Swagger UI's own files.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.read_sessionmaker = make_read_sessionmaker(engine)
    app.state.storage = make_storage(
        settings.resolved_storage_url, settings.s3_endpoint_url, settings.s3_public_endpoint_url
    )
    app.state.staging = staging
    dispatcher = (
        Dispatcher(
            app.state.sessionmaker,
            DispatchSettings(
                timeout=settings.webhook_timeout,
                max_attempts=settings.webhook_max_attempts,
                retry_base=settings.webhook_retry_base,
                poll=settings.webhook_poll,
                allow_private=settings.webhook_allow_private,
            ),
        )
        if settings.webhook_delivery
        else None
    )
    app.state.dispatcher = dispatcher
    app.state.metrics = Metrics(app.state.read_sessionmaker)
    install_handlers(app)

    # Outermost last: the request id first, then admission, then the JSON 500 for bugs.
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(AdmissionMiddleware, limit=settings.max_concurrent_requests, wait=settings.queue_timeout)
    app.add_middleware(RequestIDMiddleware)
    # Added last, so outermost: it sets the request id that the rest sees and logs.
    app.add_middleware(InstrumentationMiddleware, metrics=app.state.metrics)
    app.include_router(api_router)
    app.include_router(docs.router)
    docs.mount_docs_assets(app)
    mount_web(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    # Build every route's schemas now, in one thread: pydantic builds some lazily on first
    # use, and the first requests arriving at once raced that build (seen as a 500 under
    # load: AttributeError __pydantic_core_schema__). ~0.3 s at start-up.
    app.openapi()
    return app
