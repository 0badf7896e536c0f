"""The events a subscription can ask for, and how one is queued for its subscribers."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from partsbin.registry.db.models import Component, Evaluation, Job, Webhook, WebhookDelivery, utcnow

__all__ = [
    "EVENTS",
    "emit",
    "deliver_to",
    "component_published",
    "evaluation_recorded",
    "alias_moved",
    "version_yanked",
    "job_finished",
]

#: Every event, with what it announces. ``ping`` is sent on request, to one subscription.
EVENTS: dict[str, str] = {
    "component.published": "a new version of a component was stored",
    "evaluation.recorded": "a recombination (extractor + head) was measured",
    "alias.moved": "an alias was set, moved to another version, or removed",
    "version.yanked": "a version was yanked, or its yank undone",
    "job.finished": "a job succeeded, failed or was cancelled",
}
PING = "ping"


def _payload(event: str, delivery: str, namespace: str | None, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event": event,
        "delivery": delivery,
        "created_at": utcnow().isoformat().replace("+00:00", "Z"),
        "namespace": namespace,
        "data": data,
    }


def deliver_to(
    session: Session, hook: Webhook, event: str, namespace: str | None, data: dict[str, Any]
) -> WebhookDelivery:
    delivery = str(uuid.uuid4())
    row = WebhookDelivery(
        uuid=delivery,
        webhook_id=hook.id,
        event=event,
        payload=_payload(event, delivery, namespace, data),
        next_attempt_at=utcnow(),
        history=[],
    )
    session.add(row)
    return row


def emit(session: Session, event: str, namespaces: Iterable[str], data: dict[str, Any]) -> int:
    """Queue ``event`` for every active subscription of one of ``namespaces`` (or of all
    namespaces) that asked for it; returns how many deliveries were queued. Nothing is
    sent until the caller's transaction commits."""
    names = sorted(set(namespaces))
    hooks = session.scalars(
        sa.select(Webhook).where(
            Webhook.active.is_(True), sa.or_(Webhook.namespace.is_(None), Webhook.namespace.in_(names))
        )
    ).all()
    queued = 0
    for hook in hooks:
        if event in (hook.events or ()):
            deliver_to(session, hook, event, hook.namespace or (names[0] if len(names) == 1 else None), data)
            queued += 1
    if queued:
        session.flush()
    return queued


def _component(c: Component) -> dict[str, Any]:
    return {
        "ref": c.ref,
        "digest": f"sha256:{c.digest}",
        "role": c.role,
        "arch": c.arch_name,
        "version": c.version,
        "path": f"/components/{c.namespace}/{c.name}/{c.version}",
    }


def component_published(session: Session, c: Component) -> int:
    return emit(session, "component.published", [c.namespace], {"component": _component(c)})


def evaluation_recorded(session: Session, ev: Evaluation, extractor: Component, head: Component) -> int:
    data = {
        "evaluation": {
            "id": ev.id,
            "metric": ev.metric,
            "value": ev.value,
            "samples": ev.samples,
            "bn_mode": ev.bn_mode,
            "data_digest": ev.data_digest,
            "dataset": ev.dataset,
            "own_test": ev.own_test,
            "trust": ev.trust,
            "job_id": ev.job_id,
            "path": f"/evaluations/{ev.id}",
        },
        "extractor": _component(extractor),
        "head": _component(head),
    }
    return emit(session, "evaluation.recorded", [extractor.namespace, head.namespace], data)


def alias_moved(
    session: Session, namespace: str, name: str, alias: str, *, version: int | None, previous: int | None
) -> int:
    data = {"alias": f"{namespace}/{name}:{alias}", "version": version, "previous": previous}
    return emit(session, "alias.moved", [namespace], data)


def version_yanked(session: Session, c: Component) -> int:
    data = {"component": _component(c), "yanked": c.yanked_at is not None, "reason": c.yank_reason}
    return emit(session, "version.yanked", [c.namespace], data)


def job_finished(session: Session, job: Job) -> int:
    spec = job.spec or {}
    data = {
        "job": {
            "id": job.id,
            "kind": spec.get("kind", "train"),
            "name": spec.get("name"),
            "status": job.status,
            "error": job.error,
            "result_refs": list(job.result_refs or []),
            "origin": job.origin,
            "path": f"/jobs/{job.id}",
        }
    }
    return emit(session, "job.finished", [job.namespace], data)
