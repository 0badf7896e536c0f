"""The webhooks page: a namespace owner's or an admin's subscriptions, their latest
deliveries with each attempt, and forms to add, ping, pause, resume and delete them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from partsbin.registry.api.deps import ReadSessionDep, SessionDep, SettingsDep
from partsbin.registry.crud import webhooks as crud
from partsbin.registry.crud.tokens import Principal
from partsbin.registry.errors import InvalidRequest
from partsbin.registry.web.auth import WebPrincipal, web_principal
from partsbin.registry.web.forms import same_origin
from partsbin.registry.web.render import DbInt, LoginRequired, PageRoute, page
from partsbin.registry.webhooks.dispatch import wake
from partsbin.registry.webhooks.events import EVENTS

router = APIRouter(route_class=PageRoute, include_in_schema=False, dependencies=[Depends(web_principal)])
_forms = [Depends(same_origin)]
RECENT = 10


def _manager(principal: Principal) -> Principal:
    if principal.token_id is None:
        raise LoginRequired("webhooks are managed by admins and namespace owners: sign in with such a token")
    return principal


def _render(request: Request, session: Session, principal: Principal, status_code: int = 200, **extra: Any) -> Response:
    hooks = crud.list_webhooks(session, principal)
    recent = {h.id: crud.list_deliveries(session, h, limit=RECENT, cursor=None, status=None)[0] for h in hooks}
    namespaces = [ns for ns in principal.namespaces if principal.can_manage(ns)] if principal.scope != "admin" else []
    return page(
        request,
        "webhooks.html",
        status_code,
        hooks=hooks,
        recent=recent,
        events=EVENTS,
        namespaces=namespaces,
        is_admin=principal.scope == "admin",
        **extra,
    )


@router.get("/ui/webhooks")
def webhooks(request: Request, session: ReadSessionDep, principal: WebPrincipal) -> Response:
    return _render(request, session, _manager(principal))


@router.post("/ui/webhooks", dependencies=_forms)
def add(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: WebPrincipal,
    url: Annotated[str, Form(max_length=2048)],
    namespace: Annotated[str, Form(max_length=64)] = "",
    events: Annotated[list[str] | None, Form()] = None,
    description: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    principal = _manager(principal)
    try:
        hook, secret = crud.create_webhook(
            session=session,
            principal=principal,
            url=url,
            events=events or None,
            namespace=namespace.strip() or None,
            description=description,
            secret=None,
            allow_private=settings.webhook_allow_private,
            max_per_namespace=settings.max_webhooks_per_namespace,
        )
    except InvalidRequest as exc:
        session.rollback()
        return _render(request, session, principal, 422, message=exc.detail, form={"url": url, "namespace": namespace})
    crud.ping(session=session, hook=hook)
    session.commit()
    wake(request.app)
    return _render(request, session, principal, 201, created=hook, secret=secret)


def _back() -> Response:
    return RedirectResponse("/ui/webhooks", status_code=303)


@router.post("/ui/webhooks/{webhook_id}/ping", dependencies=_forms)
def ping(webhook_id: DbInt, request: Request, session: SessionDep, principal: WebPrincipal) -> Response:
    crud.ping(session=session, hook=crud.get_webhook(session, _manager(principal), webhook_id))
    session.commit()
    wake(request.app)
    return _back()


@router.post("/ui/webhooks/{webhook_id}/delete", dependencies=_forms)
def delete(webhook_id: DbInt, session: SessionDep, principal: WebPrincipal) -> Response:
    crud.delete_webhook(session=session, hook=crud.get_webhook(session, _manager(principal), webhook_id))
    session.commit()
    return _back()


# Last: its {action} would otherwise take /delete's and /ping's paths.
@router.post("/ui/webhooks/{webhook_id}/{action}", dependencies=_forms)
def pause_or_resume(
    webhook_id: DbInt, action: Literal["pause", "resume"], session: SessionDep, principal: WebPrincipal
) -> Response:
    hook = crud.get_webhook(session, _manager(principal), webhook_id)
    crud.update_webhook(session=session, hook=hook, active=action == "resume", events=None, description=None)
    session.commit()
    return _back()
