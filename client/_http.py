"""The one place that turns HTTP answers into client errors, and the one retry helper."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from partsbin.client.errors import (
    ComponentNotFound,
    Conflict,
    ConnectionFailed,
    DatasetNotFound,
    Incompatible,
    InvalidUpload,
    JobNotFound,
    RegistryError,
    ServerError,
    Unauthorized,
    UploadNotFound,
    WebhookNotFound,
)

__all__ = ["raise_for_status", "transport_error", "with_retries", "parse_retry_after", "MAX_RETRY_AFTER"]

#: The longest a client waits because a server said so (Retry-After): a broken or
#: hostile registry must not park a client for hours.
MAX_RETRY_AFTER = 10.0

T = TypeVar("T")

_BY_CODE: dict[str, type[RegistryError]] = {
    "not_found": ComponentNotFound,
    "unauthorized": Unauthorized,
    "forbidden": Unauthorized,
    "invalid_upload": InvalidUpload,
    "invalid_name": InvalidUpload,
    "invalid_request": InvalidUpload,
    "too_large": InvalidUpload,
    "incompatible": Incompatible,
    "conflict": Conflict,
    "upload_gone": Conflict,
    "storage_unavailable": ServerError,
}
_BY_STATUS: dict[int, type[RegistryError]] = {
    404: ComponentNotFound,
    401: Unauthorized,
    403: Unauthorized,
    409: Conflict,
    410: Conflict,
    413: InvalidUpload,
    422: InvalidUpload,
}
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def raise_for_status(response: httpx.Response) -> httpx.Response:
    if response.is_success or response.status_code == 304:
        return response
    code = response.headers.get("x-error-code")
    message = response.reason_phrase or f"HTTP {response.status_code}"
    try:
        if not response.is_stream_consumed:
            response.read()
        body = response.json()
        if isinstance(body, dict) and body.get("detail"):
            message = str(body["detail"])
            code = code or body.get("code")
    except Exception:  # noqa: BLE001 — a non-JSON error body keeps the reason phrase
        pass
    cls = (
        _BY_CODE.get(code or "")
        or _BY_STATUS.get(response.status_code)
        or (ServerError if response.status_code >= 500 else RegistryError)
    )
    if response.status_code == 401 and "authorization" not in response.request.headers:
        # The registry words this for HTTP ("send 'Authorization: Bearer <token>'"); from
        # Python or the CLI the token is given another way.
        what = message.split(":")[0]
        message = (
            f"{what}: pass --token, set PARTSBIN_TOKEN or run `partsbin login` "
            f"(the registry at {response.request.url.scheme}://{response.request.url.netloc.decode()})"
        )
    if issubclass(cls, ComponentNotFound):
        cls = _not_found(response.request.url.path)
    exc = cls(message, status_code=response.status_code, code=code, request_id=response.headers.get("x-request-id"))
    exc.retry_after = parse_retry_after(response.headers.get("retry-after"))  # type: ignore[attr-defined]
    raise exc


def _not_found(path: str) -> type[RegistryError]:
    """What was not there, by the route that was asked."""
    for prefix, cls in (
        ("/jobs", JobNotFound),
        ("/datasets", DatasetNotFound),
        ("/uploads", UploadNotFound),
        ("/webhooks", WebhookNotFound),
    ):
        if path == prefix or path.startswith(prefix + "/"):
            return cls
    return ComponentNotFound


class LazyTLSTransport(httpx.BaseTransport):
    """httpx's transport, with the TLS context (certifi's bundle: ``httpx.Client()`` took
    66 ms on this machine, 1 ms with this transport) built on the first ``https`` request
    instead of when the client is made: a ``Registry`` on an ``http://`` URL never pays
    for it, while a redirect to an ``https`` presigned URL is still verified."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        # verify=False only skips building the bundle: this transport is used for http:// alone.
        self._plain = httpx.HTTPTransport(verify=False, **kwargs)
        self._tls: httpx.HTTPTransport | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "https":
            return self._plain.handle_request(request)
        if self._tls is None:
            with self._lock:
                if self._tls is None:
                    self._tls = httpx.HTTPTransport(**self._kwargs)
        return self._tls.handle_request(request)

    def close(self) -> None:
        self._plain.close()
        if self._tls is not None:
            self._tls.close()


def transport_error(exc: httpx.TransportError) -> ConnectionFailed:
    """The registry did not answer: say which URL, and how to point at another."""
    try:
        url = exc.request.url
        where = f" at {url.scheme}://{url.netloc.decode()}"
    except RuntimeError:  # an error raised before any request was made
        where = ""
    return ConnectionFailed(
        f"could not reach the registry{where} ({exc or type(exc).__name__}): is it running? "
        "Point at another with --url or PARTSBIN_URL"
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait, from ``Retry-After`` (delay-seconds or an HTTP date, RFC 9110),
    capped at :data:`MAX_RETRY_AFTER`; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - datetime.now(UTC)).total_seconds()), MAX_RETRY_AFTER)


def with_retries(
    fn: Callable[[], T],
    *,
    attempts: int | None = 4,
    base: float = 0.25,
    cap: float = 8.0,
    deadline: float | None = None,
) -> T:
    """Retry an idempotent request on 408/429/5xx and network errors, doubling the wait
    up to ``cap`` and honouring ``Retry-After`` (itself capped at :data:`MAX_RETRY_AFTER`).

    ``deadline`` (a ``time.monotonic()`` value) bounds the retrying in time instead of,
    or as well as, ``attempts`` (None: as many as fit before the deadline)."""
    attempt = 0
    while True:
        try:
            return fn()
        except (httpx.TransportError, RegistryError) as exc:
            retriable = isinstance(exc, httpx.TransportError) or (
                isinstance(exc, RegistryError) and exc.status_code in RETRY_STATUS
            )
            wait = min(cap, base * 2**attempt) * (0.5 + random.random() / 2)
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                wait = min(float(retry_after), MAX_RETRY_AFTER)
            attempt += 1
            out_of_attempts = attempts is not None and attempt >= attempts
            out_of_time = deadline is not None and time.monotonic() + wait > deadline
            if not retriable or out_of_attempts or out_of_time:
                if isinstance(exc, httpx.TransportError):
                    raise transport_error(exc) from exc
                raise
            time.sleep(wait)
