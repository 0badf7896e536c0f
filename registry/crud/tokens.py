"""API tokens: created, listed and revoked here, by the CLI (on the database
directly — how the first admin token is made) and by the admin routes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from partsbin.parts.names import validate_part
from partsbin.registry.db.models import Token, utcnow
from partsbin.registry.errors import InvalidRequest, NotFound

__all__ = ["SCOPES", "Principal", "hash_token", "create_token", "list_tokens", "revoke_token", "authenticate"]

SCOPES = ("read", "publish", "admin")
TOKEN_PREFIX = "pb_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: an anonymous reader or a token's holder."""

    token_id: int | None
    scope: str  # "anonymous", "read", "publish" or "admin"
    namespaces: tuple[str, ...] = ()
    owner: bool = False

    def can_publish(self, namespace: str) -> bool:
        return self.scope == "admin" or (self.scope == "publish" and namespace in self.namespaces)

    def can_manage(self, namespace: str) -> bool:
        """Move aliases and yank: admins, and owners of the namespace."""
        return self.scope == "admin" or (self.scope == "publish" and self.owner and namespace in self.namespaces)


def create_token(
    *,
    session: Session,
    scope: str,
    name: str = "",
    namespaces: list[str] | None = None,
    owner: bool = False,
    expires_in: timedelta | None = None,
) -> tuple[Token, str]:
    """Returns the row and the secret, which is shown once and never stored."""
    if scope not in SCOPES:
        raise InvalidRequest(f"unknown scope {scope!r}: expected one of {', '.join(SCOPES)}")
    namespaces = [validate_part(ns, "namespace") for ns in (namespaces or [])]
    if scope == "publish" and not namespaces:
        raise InvalidRequest("a publish token needs at least one namespace it may publish into")
    if owner and scope != "publish":
        raise InvalidRequest("--owner applies to publish tokens (admin tokens already manage every namespace)")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = Token(
        token_hash=hash_token(secret),
        prefix=secret[:10],
        name=name,
        scope=scope,
        namespaces=namespaces,
        owner=owner,
        expires_at=(utcnow() + expires_in) if expires_in else None,
    )
    session.add(row)
    session.flush()
    return row, secret


def list_tokens(session: Session, include_revoked: bool = False) -> list[Token]:
    q = sa.select(Token).order_by(Token.id)
    if not include_revoked:
        q = q.where(Token.revoked_at.is_(None))
    return list(session.scalars(q))


def revoke_token(*, session: Session, token_id: int) -> Token:
    row = session.get(Token, token_id)
    if row is None:
        raise NotFound(f"no token with id {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    session.flush()
    return row


def authenticate(session: Session, secret: str) -> Principal | None:
    row = session.scalars(sa.select(Token).where(Token.token_hash == hash_token(secret))).first()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= utcnow():
        return None
    return Principal(token_id=row.id, scope=row.scope, namespaces=tuple(row.namespaces or ()), owner=row.owner)
