"""/whoami: what the caller's token may do, so a client can check before it starts work
(huggingface_hub's ``whoami`` serves the same purpose)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from partsbin.registry.api.deps import PrincipalDep

router = APIRouter(tags=["tokens"])


class WhoAmI(BaseModel):
    token_id: int | None = Field(description="null for an anonymous caller")
    scope: str = Field(description="anonymous, read, publish or admin")
    namespaces: list[str] = Field(description="where a publish token may publish")
    owner: bool = Field(description="a publish token that also moves aliases and yanks in its namespaces")


@router.get("/whoami", response_model=WhoAmI, summary="The caller's token: scope and namespaces")
async def whoami(principal: PrincipalDep) -> WhoAmI:
    return WhoAmI(
        token_id=principal.token_id, scope=principal.scope, namespaces=list(principal.namespaces), owner=principal.owner
    )
