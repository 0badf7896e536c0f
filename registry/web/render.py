"""Rendering the web pages: the Jinja2 environment, its filters, and error pages.

Pages raise the API's own errors (``NotFound``, ``Unauthorized``...); :class:`PageRoute`
answers them as HTML pages with the same status, where the API answers JSON.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Path as PathParam
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from partsbin.registry.errors import APIError, InvalidRequest
from partsbin.registry.web.forms import SECURITY_HEADERS

__all__ = ["templates", "page", "PageRoute", "LoginRequired", "id_cursor", "DbInt"]

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

#: An id or version in a page's path: a database integer (larger ones would overflow SQLite: a 422, not a 500).
DbInt = Annotated[int, PathParam(ge=1, le=2**63 - 1)]


class LoginRequired(APIError):
    status_code, code = 401, "unauthorized"


def _aware(dt: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; they were written as UTC.
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def age(dt: datetime | None) -> str:
    if dt is None:
        return ""
    seconds = (datetime.now(UTC) - _aware(dt)).total_seconds()
    for limit, unit, size in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600), (86400 * 60, "days", 86400)):
        if seconds < limit:
            return "just now" if unit == "s" and seconds < 10 else f"{int(seconds // size)} {unit} ago"
    return _aware(dt).strftime("%Y-%m-%d")


def when(dt: datetime | None) -> str:
    return _aware(dt).strftime("%Y-%m-%d %H:%M:%S UTC") if dt else ""


def size(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def pct(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value * 100:.{digits}f}%"


def plain(value: Any) -> str:
    """A card's value for people: floats to 4 significant digits (0.937037037037037 reads
    0.937), nothing for an unset value (never "None")."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


templates.env.filters.update(age=age, when=when, size=size, pct=pct, plain=plain)


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    principal = getattr(request.state, "web_principal", None)
    settings = request.app.state.settings
    return templates.TemplateResponse(
        request,
        name,
        {"principal": principal, "anonymous_read": settings.anonymous_read, **context},
        status_code=status_code,
    )


class PageRoute(APIRoute):
    """Errors raised while building a page are answered as an HTML page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            start = time.perf_counter()
            try:
                response = await handler(request)
                # How long the page took to build (queries and rendering), as the API's
                # publish reports its steps: what bench/web_bench.py compares with the
                # latency a client sees.
                response.headers["Server-Timing"] = f"page;dur={(time.perf_counter() - start) * 1000:.1f}"
                response.headers.update(SECURITY_HEADERS)
                return response
            except LoginRequired as exc:
                response = page(request, "login.html", exc.status_code, message=exc.detail, next=_here(request))
                code = exc.code
            except APIError as exc:
                response = page(
                    request, "error.html", exc.status_code, message=exc.detail, code=exc.code, status=exc.status_code
                )
                code = exc.code
            except RequestValidationError as exc:
                message = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}" for e in exc.errors()
                )
                response = page(request, "error.html", 422, message=message, code="invalid_request", status=422)
                code = "invalid_request"
            response.headers["X-Error-Code"] = code
            response.headers.update(SECURITY_HEADERS)
            return response

        return handle


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def id_cursor(value: str | None, what: str) -> int | None:
    """A page's cursor (the last id of the previous page), checked: a 4xx page, not a 500."""
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise InvalidRequest(f"invalid {what} {value!r}: follow the page's own links")
    return int(value)
