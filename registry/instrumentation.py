"""One access log line and the request metrics per request, as a pure ASGI middleware.

Pure ASGI for the reason ``registry/middleware.py`` gives (``BaseHTTPMiddleware`` halves
upload throughput); counting body bytes costs one addition per chunk.

It runs outermost. It gives each request its id, from the client's ``X-Request-ID`` or
a new one, and where the client sent none it adds the new id to the request's headers,
so that everything inside (``RequestIDMiddleware``, which echoes it on the answer, and
any handler) sees the one id that the log lines carry.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Annotated

from fastapi import Depends
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from partsbin.registry.api.deps import get_principal
from partsbin.registry.crud.tokens import Principal
from partsbin.registry.logs import begin_request, current_request
from partsbin.registry.metrics import Metrics, upload_rejection_reason

__all__ = ["InstrumentationMiddleware", "route_template", "logged_principal"]

access_log = logging.getLogger("partsbin.registry.access")


_CONVERTER = re.compile(r"\{(\w+):\w+\}")


def route_template(scope: Scope) -> str:
    """The matched route's template (``/components/{ns}/{name}``), or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        # Without path converters (``{version:id}``): the label is the template people read.
        return _CONVERTER.sub(r"{\1}", path)
    root, app_root = scope.get("root_path", ""), scope.get("app_root_path", "")
    if root and root != app_root:  # a mounted app (the web pages' static files)
        return f"{root.removeprefix(app_root)}/{{path}}"
    return "unmatched"


class InstrumentationMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = given or uuid.uuid4().hex
        if not given:
            scope["headers"] = [*scope["headers"], (b"x-request-id", rid.encode())]
        begin_request(rid, scope["method"], scope["path"])
        start = time.perf_counter()
        status, received, sent = 500, 0, 0
        answer_headers: dict[bytes, bytes] = {}

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def observing_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                if status >= 400:
                    answer_headers.update((k.lower(), v) for k, v in message.get("headers", ()))
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            elif message["type"] == "http.response.zerocopysend":
                sent += message.get("count") or 0
            await send(message)

        try:
            await self.app(scope, counting_receive, observing_send)
        finally:
            # An exception here has not been answered yet: Starlette's outermost handler
            # answers 500 after this line, and the traceback is logged there (or by the
            # server), once (``logs._TracebackOnce``).
            seconds = time.perf_counter() - start
            route = route_template(scope)
            self.metrics.observe(scope["method"], route, status, seconds, received, sent)
            if route == "/components" and scope["method"] == "POST":
                reason = upload_rejection_reason(status, answer_headers)
                if reason:
                    self.metrics.upload_rejections.labels(reason).inc()
            client = scope.get("client")
            access_log.info(
                "%s %s %d %.1f ms",
                scope["method"],
                scope["path"],
                status,
                seconds * 1000,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "bytes_in": received,
                    "bytes_out": sent,
                    "client": client[0] if client else None,
                },
            )


async def logged_principal(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    """``get_principal``, noting the token's id (never the token) for the request's log lines."""
    ctx = current_request()
    if ctx is not None:
        ctx.token_id = principal.token_id
    return principal
