"""What the OpenAPI document says each operation may answer besides success.

Every error body is :class:`~partsbin.registry.errors.ErrorOut`, also for 422 (FastAPI
would otherwise document its own array-shaped validation error, which this API never
sends). The statuses every operation can give are declared once on the routers
(``api/routes/__init__.py``); routes add what is theirs (404, 409, 413...).
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from partsbin.registry.api.handlers import ErrorOut
from partsbin.registry.api.schemas import ComponentOut
from partsbin.registry.api.timing import ServerTiming

__all__ = ["errors", "published", "COMMON_ERRORS", "GUARDED_ERRORS", "FILE_RESPONSES"]

_WHY = {
    400: "a body that cannot be parsed at all (not UTF-8, nested too deeply)",
    401: "no token, or an unknown, revoked or expired one",
    403: "the token's scope or namespaces do not allow this",
    404: "not found",
    409: "conflict with the current state (a job's lease, a version number)",
    413: "the upload is larger than PARTSBIN_MAX_UPLOAD_BYTES",
    422: "invalid input: the detail names the field and what to fix",
    500: "unexpected server error (logged with the request id)",
    503: "the database or blob storage is unavailable, or the registry is busy; see Retry-After",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorOut, "description": _WHY[status]} for status in statuses}


#: Any operation: bad input, a bug, an outage or a full registry.
COMMON_ERRORS = errors(400, 422, 500, 503)
#: Operations behind authentication (every one but /healthz).
GUARDED_ERRORS = errors(401, 403)

_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the file (ETag: its digest)", "content": _BINARY},
    206: {"description": "the requested byte range", "content": _BINARY},
    304: {"description": "not modified (If-None-Match matched the digest)"},
    307: {"description": "with S3 storage: the file is at the presigned URL in Location (short-lived)"},
    416: {"description": "the byte range lies outside the file (Content-Range: bytes */SIZE)"},
}


def published(out: ComponentOut, created: bool, timing: ServerTiming) -> JSONResponse:
    """A publish's answer: 201 with the new version, or 200 with the version that already
    holds these bytes; ``Server-Timing`` says where the time went."""
    return JSONResponse(
        out.model_dump(mode="json"), status_code=201 if created else 200, headers={"Server-Timing": timing.header()}
    )
