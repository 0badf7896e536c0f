"""/tokens: admin management of API tokens over HTTP (the CLI works on the database)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from partsbin.registry.api.deps import AdminDep, ReadSessionDep, SessionDep
from partsbin.registry.api.params import IdPath
from partsbin.registry.api.responses import errors
from partsbin.registry.api.schemas import TokenCreated, TokenIn, TokenOut
from partsbin.registry.crud import tokens as crud
from partsbin.registry.db.models import Token

router = APIRouter(prefix="/tokens", tags=["tokens"])


def _out(t: Token) -> dict:
    return dict(
        id=t.id,
        prefix=t.prefix,
        name=t.name,
        scope=t.scope,
        namespaces=list(t.namespaces or []),
        owner=t.owner,
        created_at=t.created_at,
        expires_at=t.expires_at,
        revoked=t.revoked_at is not None,
    )


@router.post("", response_model=TokenCreated, status_code=201, summary="Create a token (admin)")
def create(body: TokenIn, session: SessionDep, _admin: AdminDep) -> TokenCreated:
    expires = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    row, secret = crud.create_token(
        session=session,
        scope=body.scope,
        name=body.name,
        namespaces=body.namespaces,
        owner=body.owner,
        expires_in=expires,
    )
    session.commit()
    return TokenCreated(**_out(row), token=secret)


@router.get("", response_model=list[TokenOut], summary="List tokens (admin)")
def list_(session: ReadSessionDep, _admin: AdminDep, include_revoked: bool = False) -> list[TokenOut]:
    return [TokenOut(**_out(t)) for t in crud.list_tokens(session, include_revoked)]


@router.delete("/{token_id:id}", response_model=TokenOut, summary="Revoke a token (admin)", responses=errors(404))
def revoke(token_id: IdPath, session: SessionDep, _admin: AdminDep) -> TokenOut:
    row = crud.revoke_token(session=session, token_id=token_id)
    session.commit()
    return TokenOut(**_out(row))
