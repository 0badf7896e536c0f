"""Unknown query parameters are refused, on every route.

FastAPI ignores parameters a route does not declare, so ``GET /components?rol=head``
(a typo) silently returns the unfiltered list. One router-level dependency compares the
request's parameters with those the matched route declares (its dependencies' included).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from partsbin.registry.errors import InvalidRequest, Unauthorized

__all__ = ["reject_unknown_query"]


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


_DECLARED: dict[int, frozenset[str]] = {}
# Where clients put tokens by mistake: refused as what they are, a token in the wrong place.
_CREDENTIAL_NAMES = frozenset({"token", "access_token", "api_key", "apikey", "authorization", "bearer"})


def _declared(route: APIRoute) -> frozenset[str]:
    # Routes live as long as the app and are not hashable: keyed by identity.
    found = _DECLARED.get(id(route))
    if found is None:
        found = _DECLARED[id(route)] = frozenset(_query_names(route.dependant))
    return found


async def reject_unknown_query(request: Request) -> None:
    if not request.query_params:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = _declared(route)
    unknown = sorted(set(request.query_params) - declared)
    credentials = [name for name in unknown if name.lower() in _CREDENTIAL_NAMES]
    if credentials:
        raise Unauthorized(
            f"this request needs a token; {credentials[0]!r} in the query string is never read (URLs end up in "
            "logs): send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if unknown:
        takes = ", ".join(sorted(declared)) or "none"
        raise InvalidRequest(f"unknown query parameter {', '.join(map(repr, unknown))}: this route takes {takes}")
