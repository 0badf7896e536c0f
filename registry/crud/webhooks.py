"""Webhook subscriptions and their deliveries: who may make, see and change which.

An admin may subscribe to every namespace (``namespace`` None) or one; a namespace
owner (a publish token with ``--owner``) to the namespaces they manage. Others see no
subscriptions at all: a subscription they cannot manage answers 404, as if it did not
exist, so its URL and existence stay private.
"""

from __future__ import annotations

import secrets as secrets_module

import sqlalchemy as sa
from sqlalchemy.orm import Session

from partsbin.parts.names import validate_part
from partsbin.registry.crud.tokens import Principal
from partsbin.registry.db.models import Webhook, WebhookDelivery, utcnow
from partsbin.registry.errors import Conflict, Forbidden, InvalidRequest, NotFound
from partsbin.registry.webhooks.events import EVENTS, PING, deliver_to
from partsbin.registry.webhooks.targets import InvalidTarget, check_address, check_url

__all__ = [
    "create_webhook",
    "list_webhooks",
    "get_webhook",
    "update_webhook",
    "delete_webhook",
    "list_deliveries",
    "ping",
    "redeliver",
    "DELIVERY_STATUSES",
]

DELIVERY_STATUSES = ("pending", "succeeded", "failed")


def _may_manage(principal: Principal, namespace: str | None) -> bool:
    if namespace is None:
        return principal.scope == "admin"
    return principal.can_manage(namespace)


def _events(events: list[str] | None) -> list[str]:
    if not events:
        return sorted(EVENTS)
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise InvalidRequest(f"unknown event {', '.join(map(repr, unknown))}: expected some of {', '.join(EVENTS)}")
    return sorted(set(events))


def create_webhook(
    *,
    session: Session,
    principal: Principal,
    url: str,
    events: list[str] | None,
    namespace: str | None,
    description: str,
    secret: str | None,
    allow_private: bool,
    max_per_namespace: int,
) -> tuple[Webhook, str]:
    """Returns the subscription and its secret (generated unless given)."""
    if namespace is not None:
        namespace = validate_part(namespace, "namespace")
    if not _may_manage(principal, namespace):
        if namespace is None:
            raise Forbidden("only an admin may subscribe to every namespace: name one with 'namespace'")
        raise Forbidden(f"only an admin or an owner of namespace {namespace!r} may subscribe to its events")
    private_ok = principal.scope == "admin" or allow_private
    try:
        url = check_url(url)
        if not private_ok:
            check_address(url)
    except InvalidTarget as exc:
        raise InvalidRequest(str(exc), code="invalid_webhook_url") from None
    if secret is not None and len(secret) < 16:
        raise InvalidRequest("a webhook secret needs at least 16 characters (leave it out to have one made)")
    count = session.scalar(
        sa.select(sa.func.count())
        .select_from(Webhook)
        .where(Webhook.namespace.is_(None) if namespace is None else Webhook.namespace == namespace)
    )
    if (count or 0) >= max_per_namespace:
        where = f"namespace {namespace!r}" if namespace else "every namespace"
        raise InvalidRequest(
            f"{where} already has {count} subscriptions (PARTSBIN_MAX_WEBHOOKS_PER_NAMESPACE={max_per_namespace}): "
            "delete one first",
            code="too_many_webhooks",
        )
    secret = secret or secrets_module.token_urlsafe(32)
    row = Webhook(
        url=url,
        namespace=namespace,
        events=_events(events),
        secret=secret,
        description=description,
        active=True,
        private_ok=private_ok,
        created_by=principal.token_id,
    )
    session.add(row)
    session.flush()
    return row, secret


def _visible(principal: Principal) -> sa.ColumnElement[bool]:
    if principal.scope == "admin":
        return sa.true()
    managed = [ns for ns in principal.namespaces if principal.can_manage(ns)]
    return Webhook.namespace.in_(managed)


def list_webhooks(session: Session, principal: Principal) -> list[Webhook]:
    return list(session.scalars(sa.select(Webhook).where(_visible(principal)).order_by(Webhook.id)))


def get_webhook(session: Session, principal: Principal, webhook_id: int) -> Webhook:
    row = session.get(Webhook, webhook_id)
    if row is None or not _may_manage(principal, row.namespace):
        raise NotFound(f"no webhook with id {webhook_id} (or not one this token manages)")
    return row


def update_webhook(
    *,
    session: Session,
    hook: Webhook,
    active: bool | None,
    events: list[str] | None,
    description: str | None,
) -> Webhook:
    if active is not None:
        hook.active = active
    if events is not None:
        hook.events = _events(events)
    if description is not None:
        hook.description = description
    session.flush()
    return hook


def delete_webhook(*, session: Session, hook: Webhook) -> None:
    session.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id))
    session.delete(hook)
    session.flush()


def list_deliveries(
    session: Session, hook: Webhook, *, limit: int, cursor: int | None, status: str | None
) -> tuple[list[WebhookDelivery], str | None]:
    """Newest first."""
    q = sa.select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id)
    if status is not None:
        q = q.where(WebhookDelivery.status == status)
    if cursor is not None:
        q = q.where(WebhookDelivery.id < cursor)
    rows = list(session.scalars(q.order_by(WebhookDelivery.id.desc()).limit(limit + 1)))
    return rows[:limit], (str(rows[limit - 1].id) if len(rows) > limit else None)


def ping(*, session: Session, hook: Webhook) -> WebhookDelivery:
    """A ``ping`` delivery to this subscription alone (as GitHub sends one): checks the
    receiver and the secret without waiting for an event."""
    row = deliver_to(
        session,
        hook,
        PING,
        hook.namespace,
        {"webhook": {"id": hook.id, "url": hook.url, "events": list(hook.events), "namespace": hook.namespace}},
    )
    session.flush()
    return row


def redeliver(*, session: Session, hook: Webhook, delivery_id: int) -> WebhookDelivery:
    """Queue a finished delivery again now, with the same id and body (receivers deduplicate by id)."""
    row = session.get(WebhookDelivery, delivery_id)
    if row is None or row.webhook_id != hook.id:
        raise NotFound(f"webhook {hook.id} has no delivery {delivery_id}")
    if row.status == "pending":
        raise Conflict(f"delivery {delivery_id} is still pending; it is retried on its own")
    row.status, row.attempts, row.next_attempt_at = "pending", 0, utcnow()
    session.flush()
    return row
