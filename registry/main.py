"""Builds the FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from partsbin import __version__
from partsbin.registry.api.routes import api_router
from partsbin.registry.config import Settings
from partsbin.registry.db.session import make_engine, make_read_sessionmaker, make_sessionmaker
from partsbin.registry.errors import install_handlers
from partsbin.registry.instrumentation import InstrumentationMiddleware
from partsbin.registry.metrics import Metrics
from partsbin.registry.middleware import RequestIDMiddleware
from partsbin.registry.storage import make_storage
from partsbin.registry.web import mount_web

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    engine = make_engine(settings.resolved_database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(
        title="partsbin registry",
        version=__version__,
        description="Registry of neural-network components made compatible by training (Gygli et al., AAAI 2021).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = make_sessionmaker(engine)
    app.state.read_sessionmaker = make_read_sessionmaker(engine)
    app.state.storage = make_storage(settings.resolved_storage_url, settings.s3_endpoint_url)
    app.state.metrics = Metrics(app.state.read_sessionmaker)
    install_handlers(app)

    app.add_middleware(RequestIDMiddleware)
    # Added last, so outermost: it sets the request id that the rest sees and logs.
    app.add_middleware(InstrumentationMiddleware, metrics=app.state.metrics)
    app.include_router(api_router)
    mount_web(app)
    return app
