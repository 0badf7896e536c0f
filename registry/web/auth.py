"""Who is reading a page: the same tokens as the API, kept in a cookie by the sign-in form.

With ``PARTSBIN_ANONYMOUS_READ=false`` every page first asks for a token. The form
checks it and stores it in an ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` over
HTTPS), so scripts in a page cannot read it and other sites' pages cannot send it. An
``Authorization: Bearer`` header works for pages too (curl, scripts).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from partsbin.registry.api.deps import SettingsDep, get_principal
from partsbin.registry.crud.tokens import Principal, authenticate
from partsbin.registry.logs import current_request
from partsbin.registry.web.forms import same_origin
from partsbin.registry.web.render import LoginRequired, PageRoute, page

__all__ = ["COOKIE", "web_principal", "WebPrincipal", "router"]

COOKIE = "partsbin_token"
ANONYMOUS = Principal(token_id=None, scope="anonymous")


def _lookup(request: Request, secret: str) -> Principal | None:
    with request.app.state.read_sessionmaker() as session:
        return authenticate(session, secret)


def web_principal(request: Request, settings: SettingsDep) -> Principal:
    if request.headers.get("authorization"):
        principal = get_principal(request, settings)
    elif secret := request.cookies.get(COOKIE):
        found = _lookup(request, secret)
        if found is None:
            raise LoginRequired("the saved token is unknown, revoked or expired: sign in again")
        principal = found
    elif settings.anonymous_read:
        principal = ANONYMOUS
    else:
        raise LoginRequired("this registry needs a token to read: sign in with one")
    request.state.web_principal = principal
    ctx = current_request()
    if ctx is not None:
        ctx.token_id = principal.token_id
    return principal


WebPrincipal = Annotated[Principal, Depends(web_principal)]

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _safe_next(target: str | None) -> str:
    # Only paths on this site: "//host" or "https://..." would make the form an open redirect.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/ui/login")
def login_form(request: Request, next: str | None = None) -> Response:
    return page(request, "login.html", next=_safe_next(next), message=None)


@router.post("/ui/login", dependencies=[Depends(same_origin)])
def login(request: Request, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/") -> Response:
    secret = token.strip()
    if not secret or _lookup(request, secret) is None:
        return page(
            request, "login.html", 401, next=_safe_next(next), message="that token is unknown, revoked or expired"
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE, secret, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/"
    )
    return response


@router.post("/ui/logout", dependencies=[Depends(same_origin)])
def logout() -> Response:
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
