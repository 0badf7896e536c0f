"""Dependencies as typed aliases: routes never build a storage client or read a
token header themselves, and tests swap these with ``dependency_overrides``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker
from starlette.routing import BaseRoute

from partsbin.parts.names import InvalidName, validate_part
from partsbin.registry.config import Settings
from partsbin.registry.crud.tokens import Principal, authenticate
from partsbin.registry.errors import APIError, Forbidden, Unauthorized
from partsbin.registry.staging import StagingArea
from partsbin.registry.storage import BlobStorage

__all__ = [
    "SettingsDep",
    "SessionDep",
    "ReadSessionDep",
    "SessionFactoryDep",
    "ReadSessionFactoryDep",
    "StorageDep",
    "StagingDep",
    "PrincipalDep",
    "RequireToken",
    "PublisherDep",
    "AdminDep",
    "token_required_operations",
    "check_part",
]


# Dependencies that only read app state are ``async def``: FastAPI runs a plain ``def``
# dependency in a worker thread, a hop that costs more than the dependency.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_session_factory(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessionmaker


async def get_read_session_factory(request: Request) -> sessionmaker[Session]:
    return request.app.state.read_sessionmaker


def get_db(request: Request) -> Iterator[Session]:
    with request.app.state.sessionmaker() as session:
        yield session


def get_read_db(request: Request) -> Iterator[Session]:
    """A session for a request that never writes (see ``make_read_sessionmaker``)."""
    with request.app.state.read_sessionmaker() as session:
        yield session


async def get_storage(request: Request) -> BlobStorage:
    return request.app.state.storage


async def get_staging(request: Request) -> StagingArea:
    return request.app.state.staging


_WWW = {"WWW-Authenticate": "Bearer"}


#: Declares the scheme in OpenAPI (``securitySchemes``, and ``security`` on every guarded
#: operation) so that generated clients and Swagger UI's "Authorize" send the token.
#: The header itself is read below, so that a malformed one gets our own message.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="a partsbin API token (`partsbin token create`); reads need none while PARTSBIN_ANONYMOUS_READ=true",
)


def get_principal(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None,
) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        if settings.anonymous_read:
            return Principal(token_id=None, scope="anonymous")
        raise Unauthorized(
            "this registry requires a token: send 'Authorization: Bearer <token>' (PARTSBIN_TOKEN)", headers=_WWW
        )
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'", headers=_WWW)
    with request.app.state.read_sessionmaker() as session:
        principal = authenticate(session, secret.strip())
    if principal is None:
        raise Unauthorized("the token is unknown, revoked or expired", headers=_WWW)
    return principal


SettingsDep = Annotated[Settings, Depends(get_settings)]
# "function" scope: the session (and its pooled connection) is closed as soon as the
# route returns, before the response is sent. With FastAPI's default "request" scope it
# stayed open until the last byte of the response had gone out (registry/main.py).
SessionDep = Annotated[Session, Depends(get_db, scope="function")]
ReadSessionDep = Annotated[Session, Depends(get_read_db, scope="function")]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_session_factory)]
ReadSessionFactoryDep = Annotated[sessionmaker[Session], Depends(get_read_session_factory)]
StorageDep = Annotated[BlobStorage, Depends(get_storage)]
StagingDep = Annotated[StagingArea, Depends(get_staging)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_token(principal: Principal, action: str) -> None:
    if principal.token_id is None:
        raise Unauthorized(f"{action} needs a token: send 'Authorization: Bearer <token>'", headers=_WWW)


class RequireToken:
    """A dependency: the caller, who must have sent a token (401: "<action> needs a
    token") and, with ``scopes``, one of those scopes (403: ``refusal``, where
    ``{scope}`` is the token's scope, quoted).

    Routes declare it (``Annotated[Principal, Depends(RequireToken("..."))]``, or the
    aliases below) rather than checking in their body, so that the operations that need a
    token say so in OpenAPI (:func:`token_required_operations`). What depends on a
    namespace named in the path or body stays a check in the route, on this principal.
    """

    def __init__(self, action: str, scopes: tuple[str, ...] = (), refusal: str = "") -> None:
        self.action = action
        self.scopes = scopes
        self.refusal = refusal

    async def __call__(self, principal: PrincipalDep) -> Principal:
        require_token(principal, self.action)
        if self.scopes and principal.scope not in self.scopes:
            raise Forbidden(self.refusal.format(scope=repr(principal.scope)))
        return principal


#: A publish or admin token (``POST /components`` and ``/uploads``).
PublisherDep = Annotated[
    Principal,
    Depends(
        RequireToken(
            "publishing",
            ("publish", "admin"),
            "publishing needs a publish or admin token; this one has scope {scope}",
        )
    ),
]
#: An admin token.
AdminDep = Annotated[Principal, Depends(RequireToken("this request", ("admin",), "this request needs an admin token"))]


def _requires_token(dependant: Dependant) -> bool:
    return any(isinstance(d.call, RequireToken) or _requires_token(d) for d in dependant.dependencies)


def token_required_operations(routes: Sequence[BaseRoute]) -> set[tuple[str, str]]:
    """``(path, method)`` of each operation that takes a :class:`RequireToken`: OpenAPI
    marks the token required there, optional elsewhere (``registry/main.py``)."""
    try:
        # FastAPI 0.165 includes routers lazily: app.routes holds the included routers,
        # and this yields their routes under their full paths (as get_openapi reads them).
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes are the routes themselves
        found = [(getattr(route, "path_format", ""), route) for route in routes]
    else:
        found = [(context.path_format or "", context.original_route) for context in iter_route_contexts(routes)]
    return {
        (path, method.lower())
        for path, route in found
        if isinstance(route, APIRoute) and _requires_token(route.dependant)
        for method in route.methods or ()
    }


def check_part(value: str, what: str) -> str:
    try:
        return validate_part(value, what)
    except InvalidName as exc:
        raise APIError(str(exc), status_code=422, code="invalid_name") from None
