"""Pure ASGI middlewares: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``)
re-wraps every body chunk of a request, which halves upload throughput here."""

from __future__ import annotations

import math
import uuid

import anyio
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from partsbin.registry.api.handlers import error_response, request_id_of

__all__ = ["RequestIDMiddleware", "AdmissionMiddleware"]


class RequestIDMiddleware:
    """Echo ``X-Request-ID`` (or make one) on every response, for the client's errors.

    The id is also kept in the request's state (``request.state.request_id``) for error
    bodies and log lines."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        # A client's id is echoed only when it is a plain token: it ends up in headers and logs.
        rid = given if given and len(given) <= 128 and given.isascii() and given.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-ID"] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)


class AdmissionMiddleware:
    """At most ``limit`` requests are handled at once; the others wait up to ``wait`` seconds
    for a turn and are then answered 503 with ``Retry-After``.

    Without a bound every request queues for the worker threads (and, behind them, the
    database pool) however long it takes, so under a burst clients time out while the
    registry keeps working on requests nobody waits for any more. A request holds its
    turn until its response starts: a download streaming its bytes, or a slow reader,
    does not keep others out (what streams holds no database connection, see
    ``api/files.py``).
    """

    def __init__(self, app: ASGIApp, limit: int, wait: float) -> None:
        self.app = app
        self.limiter = anyio.CapacityLimiter(limit)
        self.wait = wait

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = object()
        admitted = False
        with anyio.move_on_after(self.wait):
            await self.limiter.acquire_on_behalf_of(token)
            admitted = True
        if not admitted:
            retry = max(1, math.ceil(self.wait))
            response = error_response(
                503,
                "overloaded",
                f"the registry is busy: no request slot freed up within {self.wait:g} s; try again",
                {"Retry-After": str(retry)},
                request_id_of(scope),
            )
            await response(scope, receive, send)
            return
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                self.limiter.release_on_behalf_of(token)

        async def releasing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                release()
            await send(message)

        try:
            await self.app(scope, receive, releasing_send)
        finally:
            release()
