"""Exception handlers and the last-resort middleware: every error answers JSON
``{"detail", "code", "request_id"}`` with an ``X-Error-Code`` header (the client maps the
code to its exception types); see :mod:`partsbin.registry.errors` for what ends here."""

from __future__ import annotations

import logging

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from partsbin.parts.names import InvalidName
from partsbin.registry.errors import RETRY_AFTER_SECONDS, APIError, Gone, StorageUnavailable
from partsbin.registry.storage import StorageError, UploadGone

__all__ = ["ErrorOut", "install_handlers", "error_response", "request_id_of", "UnexpectedErrorMiddleware"]

log = logging.getLogger("partsbin.registry")


class ErrorOut(BaseModel):
    """The body of every error answer (the OpenAPI document says so for each operation)."""

    detail: str = Field(description="what went wrong and what to fix")
    code: str = Field(description="stable machine-readable code, also in the X-Error-Code header")
    request_id: str | None = Field(default=None, description="quote it when reporting a problem (also X-Request-ID)")


def request_id_of(scope: Scope) -> str | None:
    """The request id ``RequestIDMiddleware`` assigned (``partsbin.registry.middleware``)."""
    return (scope.get("state") or {}).get("request_id")


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None, request_id: str | None = None
) -> JSONResponse:
    return JSONResponse(
        {"detail": detail, "code": code, "request_id": request_id},
        status_code=status,
        headers={"X-Error-Code": code, **(headers or {})},
    )


# The database errors that mean "not reachable right now" rather than "this request is
# wrong": a refused or dropped connection, a locked SQLite file, no free pooled
# connection within the pool timeout. Integrity and data errors stay bugs (500).
_DB_UNAVAILABLE = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError)


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.detail, exc.headers, request_id_of(request.scope))

    # Raised from deep in a backend call that no route wraps (an upload aborted while it
    # is completed): each answers what happened instead of a 500.
    @app.exception_handler(UploadGone)
    async def _upload_gone(request: Request, exc: UploadGone) -> JSONResponse:
        return await _api_error(
            request,
            Gone(
                f"upload {exc} is no longer in progress: it was aborted (perhaps while it was being completed), "
                "completed already, expired, or started by another token; nothing was published. "
                "Start a new upload (partsbin push does).",
                code="upload_gone",
            ),
        )

    @app.exception_handler(StorageError)
    async def _storage(request: Request, exc: StorageError) -> JSONResponse:
        return await _api_error(request, StorageUnavailable(f"blob storage failed; nothing was changed: {exc}"))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = []
        names = True
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
            msg = str(err.get("msg"))
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, InvalidName):
                msg = str(cause)
            else:
                names = False
            msgs.append(f"{loc}: {msg}" if loc else msg)
        # A bad name or ref wherever it appears (path, query or body) keeps its own code.
        code = "invalid_name" if names and msgs else "invalid_request"
        return error_response(422, code, "; ".join(msgs), request_id=request_id_of(request.scope))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            400: "bad_request",
            404: "not_found",
            405: "method_not_allowed",
            401: "unauthorized",
            403: "forbidden",
        }.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route that matched the path; a
            # path served by several routes (GET and POST /components) supports them all.
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return error_response(exc.status_code, code, str(exc.detail), headers, request_id_of(request.scope))

    for cls in _DB_UNAVAILABLE:

        @app.exception_handler(cls)
        async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
            log.warning(
                "database unavailable (request %s): %s",
                request_id_of(request.scope),
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                extra={"request_id": request_id_of(request.scope)},
            )
            return error_response(
                503,
                "database_unavailable",
                "the registry's database is unavailable or busy; nothing was changed, try again",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
                request_id_of(request.scope),
            )


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


class UnexpectedErrorMiddleware:
    """Any exception no handler took: logged once with its traceback, answered as JSON 500.

    Starlette's own fallback (``ServerErrorMiddleware``) answers ``text/plain`` and
    re-raises, so the server logs the same traceback a second time, without the
    request id. This sits inside it and does not re-raise. When the response had
    already started (a body cut off while streaming), the connection is closed
    without a complete body, which tells the client the transfer failed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            rid = request_id_of(scope)
            log.exception(
                "unexpected error in %s %s (request %s)",
                scope.get("method"),
                scope.get("path"),
                rid,
                extra={"request_id": rid},
            )
            if not started:
                response = error_response(
                    500,
                    "internal_error",
                    f"unexpected server error; quote request id {rid} when reporting it",
                    None,
                    rid,
                )
                await response(scope, receive, send)
