"""Errors the API answers with: JSON ``{"detail", "code"}`` plus an ``X-Error-Code`` header.

The client maps the code to its exception types (``client/errors.py``); the codes are
part of the API and stay stable.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["APIError", "install_handlers"]


class APIError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        detail: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code
        if code is not None:
            self.code = code
        self.headers = headers or {}


class NotFound(APIError):
    status_code, code = 404, "not_found"


class InvalidUpload(APIError):
    status_code, code = 422, "invalid_upload"


class InvalidRequest(APIError):
    status_code, code = 422, "invalid_request"


class Conflict(APIError):
    status_code, code = 409, "conflict"


class Unauthorized(APIError):
    status_code, code = 401, "unauthorized"


class Forbidden(APIError):
    status_code, code = 403, "forbidden"


class TooLarge(APIError):
    status_code, code = 413, "too_large"


class StorageUnavailable(APIError):
    status_code, code = 503, "storage_unavailable"


class Incompatible(APIError):
    status_code, code = 422, "incompatible"


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"detail": detail, "code": code}, status_code=status, headers={"X-Error-Code": code, **(headers or {})}
    )


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
            msgs.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return error_response(422, "invalid_request", "; ".join(msgs))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}.get(
            exc.status_code, "http_error"
        )
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))
