"""Errors the API answers with: JSON ``{"detail", "code", "request_id"}`` plus an
``X-Error-Code`` header.

The client maps the code to its exception types (``client/errors.py``); the codes are
part of the API and stay stable. Three kinds of failure end as an error answer:

- :class:`APIError` and its subclasses: what the caller can fix (4xx), or a backend the
  registry depends on being unavailable (503 with ``Retry-After``);
- a database that cannot be reached or has no free connection: 503 with ``Retry-After``,
  so an outage answers JSON and the registry recovers on its own once the database is
  back (connections are pre-pinged, see ``db/session.py``);
- anything else is a bug: logged once with its traceback and the request id, and
  answered as a JSON 500 carrying that id.

The handlers that render them are in :mod:`partsbin.registry.api.handlers`: this module
needs no web framework, so the CLI's database commands import it without FastAPI's
~300 ms.
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "NotFound",
    "InvalidUpload",
    "InvalidRequest",
    "Conflict",
    "Unauthorized",
    "Forbidden",
    "TooLarge",
    "StorageUnavailable",
    "Incompatible",
    "RETRY_AFTER_SECONDS",
]

#: What a 503 tells clients to wait before trying again.
RETRY_AFTER_SECONDS = 1


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


class Gone(APIError):
    status_code, code = 410, "gone"


class Unauthorized(APIError):
    status_code, code = 401, "unauthorized"


class Forbidden(APIError):
    status_code, code = 403, "forbidden"


class TooLarge(APIError):
    status_code, code = 413, "too_large"


class StorageUnavailable(APIError):
    status_code, code = 503, "storage_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


class Incompatible(APIError):
    status_code, code = 422, "incompatible"
