"""/whoami: what the caller's token may do, so a client can check before it starts work
(huggingface_hub's ``whoami`` serves the same purpose)."""

from __future__ import annotations

from fastapi import APIRouter

from partsbin.registry.api.deps import PrincipalDep
from partsbin.registry.api.schemas import WhoAmI

router = APIRouter(tags=["tokens"])


@router.get("/whoami", response_model=WhoAmI, summary="The caller's token: scope and namespaces")
async def whoami(principal: PrincipalDep) -> WhoAmI:
    return WhoAmI(
        token_id=principal.token_id, scope=principal.scope, namespaces=list(principal.namespaces), owner=principal.owner
    )
