"""/webhooks: subscriptions to registry events, and the record of every delivery.

Admins and namespace owners manage them (``registry/crud/webhooks.py``); everyone else
sees none. Deliveries are sent by the registry's dispatcher thread
(``registry/webhooks/dispatch.py``).
"""

from __future__ import annotations

from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

from partsbin.registry.api.deps import ReadSessionDep, RequireToken, SessionDep, SettingsDep
from partsbin.registry.api.params import IdCursor, IdPath, Limit
from partsbin.registry.api.responses import errors
from partsbin.registry.api.schemas import (
    WebhookCreated,
    WebhookDeliveryOut,
    WebhookDeliveryPage,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
)
from partsbin.registry.crud import webhooks as crud
from partsbin.registry.crud.tokens import Principal
from partsbin.registry.db.models import Webhook, WebhookDelivery
from partsbin.registry.webhooks.dispatch import wake

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _counts(session: Session, ids: list[int]) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {i: {} for i in ids}
    if ids:
        rows = session.execute(
            sa.select(WebhookDelivery.webhook_id, WebhookDelivery.status, sa.func.count())
            .where(WebhookDelivery.webhook_id.in_(ids))
            .group_by(WebhookDelivery.webhook_id, WebhookDelivery.status)
        )
        for hook_id, status, n in rows:
            out[hook_id][status] = n
    return out


def webhook_out(hook: Webhook, counts: dict[str, int] | None = None) -> WebhookOut:
    return WebhookOut(
        id=hook.id,
        url=hook.url,
        namespace=hook.namespace,
        events=list(hook.events),
        description=hook.description,
        active=hook.active,
        created_at=hook.created_at,
        deliveries=counts or {},
    )


def delivery_out(d: WebhookDelivery) -> WebhookDeliveryOut:
    return WebhookDeliveryOut(
        id=d.id,
        uuid=d.uuid,
        webhook_id=d.webhook_id,
        event=d.event,
        status=d.status,  # type: ignore[arg-type]
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
        response_status=d.response_status,
        error=d.error,
        history=list(d.history or []),
        payload=d.payload,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
    )


@router.post(
    "",
    response_model=WebhookCreated,
    status_code=201,
    summary="Subscribe a URL to events (admin, or an owner of the namespace)",
    responses=errors(404),
)
def create(
    body: WebhookIn,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(RequireToken("subscribing to webhooks"))],
) -> WebhookCreated:
    hook, secret = crud.create_webhook(
        session=session,
        principal=principal,
        url=body.url,
        events=list(body.events) if body.events else None,
        namespace=body.namespace,
        description=body.description,
        secret=body.secret,
        allow_private=settings.webhook_allow_private,
        max_per_namespace=settings.max_webhooks_per_namespace,
    )
    crud.ping(session=session, hook=hook)
    session.commit()
    wake(request.app)
    return WebhookCreated(**webhook_out(hook, {"pending": 1}).model_dump(), secret=secret)


@router.get("", response_model=list[WebhookOut], summary="The subscriptions this token manages")
def list_(
    session: ReadSessionDep, principal: Annotated[Principal, Depends(RequireToken("listing webhooks"))]
) -> list[WebhookOut]:
    hooks = crud.list_webhooks(session, principal)
    counts = _counts(session, [h.id for h in hooks])
    return [webhook_out(h, counts[h.id]) for h in hooks]


@router.get("/{webhook_id:id}", response_model=WebhookOut, summary="One subscription", responses=errors(404))
def get(
    webhook_id: IdPath,
    session: ReadSessionDep,
    principal: Annotated[Principal, Depends(RequireToken("reading webhooks"))],
) -> WebhookOut:
    hook = crud.get_webhook(session, principal, webhook_id)
    return webhook_out(hook, _counts(session, [hook.id])[hook.id])


@router.patch(
    "/{webhook_id:id}",
    response_model=WebhookOut,
    summary="Pause, resume or change a subscription",
    responses=errors(404),
)
def patch(
    webhook_id: IdPath,
    body: WebhookPatch,
    session: SessionDep,
    principal: Annotated[Principal, Depends(RequireToken("changing webhooks"))],
) -> WebhookOut:
    hook = crud.get_webhook(session, principal, webhook_id)
    crud.update_webhook(
        session=session,
        hook=hook,
        active=body.active,
        events=list(body.events) if body.events is not None else None,
        description=body.description,
    )
    session.commit()
    return webhook_out(hook, _counts(session, [hook.id])[hook.id])


@router.delete(
    "/{webhook_id:id}",
    status_code=204,
    summary="Delete a subscription and its deliveries' record",
    responses=errors(404),
)
def delete(
    webhook_id: IdPath, session: SessionDep, principal: Annotated[Principal, Depends(RequireToken("deleting webhooks"))]
) -> None:
    crud.delete_webhook(session=session, hook=crud.get_webhook(session, principal, webhook_id))
    session.commit()


@router.get(
    "/{webhook_id:id}/deliveries",
    response_model=WebhookDeliveryPage,
    summary="A subscription's deliveries, newest first",
    responses=errors(404),
)
def deliveries(
    webhook_id: IdPath,
    session: ReadSessionDep,
    settings: SettingsDep,
    principal: Annotated[Principal, Depends(RequireToken("reading webhook deliveries"))],
    status: Annotated[Literal["pending", "succeeded", "failed"] | None, Query()] = None,
    limit: Limit = None,
    cursor: IdCursor = None,
) -> WebhookDeliveryPage:
    hook = crud.get_webhook(session, principal, webhook_id)
    rows, next_cursor = crud.list_deliveries(
        session, hook, limit=limit or settings.page_size, cursor=cursor, status=status
    )
    return WebhookDeliveryPage(items=[delivery_out(d) for d in rows], next_cursor=next_cursor)


@router.post(
    "/{webhook_id:id}/ping",
    response_model=WebhookDeliveryOut,
    status_code=202,
    summary="Send a ping event to this subscription now",
    responses=errors(404),
)
def ping(
    webhook_id: IdPath,
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(RequireToken("pinging webhooks"))],
) -> WebhookDeliveryOut:
    row = crud.ping(session=session, hook=crud.get_webhook(session, principal, webhook_id))
    session.commit()
    wake(request.app)
    return delivery_out(row)


@router.post(
    "/{webhook_id:id}/deliveries/{delivery_id:id}/redeliver",
    response_model=WebhookDeliveryOut,
    status_code=202,
    summary="Send a finished delivery again (same id and body)",
    responses=errors(404, 409),
)
def redeliver(
    webhook_id: IdPath,
    delivery_id: IdPath,
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, Depends(RequireToken("redelivering webhooks"))],
) -> WebhookDeliveryOut:
    hook = crud.get_webhook(session, principal, webhook_id)
    row = crud.redeliver(session=session, hook=hook, delivery_id=delivery_id)
    session.commit()
    wake(request.app)
    return delivery_out(row)
