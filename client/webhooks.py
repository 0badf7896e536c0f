"""Webhook subscriptions from the client's side: ``Registry.create_webhook`` and friends.

A receiver checks each delivery with :func:`partsbin.verify_signature` (the secret that
``create_webhook`` returned, the raw body, the ``X-Partsbin-Signature-256`` header).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from partsbin.client.errors import UsageError

if TYPE_CHECKING:
    from partsbin.client.registry import Registry

__all__ = ["Webhook", "WebhookDelivery", "WebhookMethods"]


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass
class Webhook:
    """A subscription. ``secret`` is set only on the answer that created it."""

    id: int
    url: str
    namespace: str | None
    events: list[str]
    description: str
    active: bool
    created_at: datetime | None
    deliveries: dict[str, int] = field(default_factory=dict)
    secret: str | None = None

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> Webhook:
        return cls(
            id=int(d["id"]),
            url=str(d["url"]),
            namespace=d.get("namespace"),
            events=list(d.get("events") or []),
            description=str(d.get("description") or ""),
            active=bool(d.get("active")),
            created_at=_when(d.get("created_at")),
            deliveries={str(k): int(v) for k, v in (d.get("deliveries") or {}).items()},
            secret=d.get("secret"),
        )


@dataclass
class WebhookDelivery:
    """One event sent (or being sent) to one subscription, with every attempt."""

    id: int
    uuid: str
    webhook_id: int
    event: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    response_status: int | None
    error: str | None
    history: list[dict[str, Any]]
    payload: dict[str, Any]
    created_at: datetime | None
    delivered_at: datetime | None

    @classmethod
    def from_api(cls, d: dict[str, Any]) -> WebhookDelivery:
        return cls(
            id=int(d["id"]),
            uuid=str(d["uuid"]),
            webhook_id=int(d["webhook_id"]),
            event=str(d["event"]),
            status=str(d["status"]),
            attempts=int(d["attempts"]),
            next_attempt_at=_when(d.get("next_attempt_at")),
            response_status=d.get("response_status"),
            error=d.get("error"),
            history=list(d.get("history") or []),
            payload=dict(d.get("payload") or {}),
            created_at=_when(d.get("created_at")),
            delivered_at=_when(d.get("delivered_at")),
        )


class WebhookMethods:
    """``Registry``'s webhook methods (admins, and owners of a namespace)."""

    def create_webhook(
        self,
        url: str,
        *,
        events: builtins.list[str] | None = None,
        namespace: str | None = None,
        description: str = "",
        secret: str | None = None,
    ) -> Webhook:
        """Subscribe ``url`` to the registry's events; a ``ping`` is sent to it at once.

        Args:
            url: the http(s) receiver. A namespace owner's must resolve to public addresses.
            events: some of component.published, evaluation.recorded, alias.moved,
                version.yanked, job.finished; default every one.
            namespace: whose events; None means every namespace (admins only).
            description: for people.
            secret: the HMAC-SHA256 key (16-128 characters); default one is made.

        Returns:
            The :class:`Webhook`, with ``secret`` set: it is not shown again.

        Raises:
            Unauthorized: not an admin or an owner of ``namespace``. RegistryError: a URL
            the registry may not deliver to, an unknown event, too many subscriptions.
        """
        body = {"url": url, "events": events, "namespace": namespace, "description": description, "secret": secret}
        return Webhook.from_api(self._reg._send("POST", "/webhooks", json=body))

    def webhooks(self) -> builtins.list[Webhook]:
        """The subscriptions this token manages, oldest first (without secrets).

        Raises:
            Unauthorized: no token.
        """
        return [Webhook.from_api(d) for d in self._reg._get("/webhooks")]

    def webhook(self, webhook_id: int) -> Webhook:
        """One subscription, with counts of its deliveries by status.

        Raises:
            WebhookNotFound: no such subscription, or not one this token manages.
        """
        return Webhook.from_api(self._reg._get(f"/webhooks/{int(webhook_id)}"))

    def update_webhook(
        self,
        webhook_id: int,
        *,
        active: bool | None = None,
        events: builtins.list[str] | None = None,
        description: str | None = None,
    ) -> Webhook:
        """Pause (``active=False``), resume, or change which events a subscription gets.

        Returns:
            The subscription as it now is.

        Raises:
            WebhookNotFound: no such subscription. UsageError: nothing to change.
        """
        body = {
            k: v for k, v in (("active", active), ("events", events), ("description", description)) if v is not None
        }
        if not body:
            raise UsageError("update_webhook: give active, events or description")
        return Webhook.from_api(self._reg._send("PATCH", f"/webhooks/{int(webhook_id)}", json=body))

    def delete_webhook(self, webhook_id: int) -> None:
        """Delete a subscription and the record of its deliveries.

        Raises:
            WebhookNotFound: no such subscription.
        """
        self._reg._send("DELETE", f"/webhooks/{int(webhook_id)}")

    def webhook_deliveries(
        self, webhook_id: int, *, status: str | None = None, limit: int | None = None
    ) -> builtins.list[WebhookDelivery]:
        """A subscription's deliveries, newest first.

        Args:
            webhook_id: the subscription.
            status: only pending, succeeded or failed ones.
            limit: at most this many (default: all).

        Returns:
            The deliveries, each with its attempts in ``history``.

        Raises:
            WebhookNotFound: no such subscription.
        """
        out: builtins.list[WebhookDelivery] = []
        for d in self._reg._pages(f"/webhooks/{int(webhook_id)}/deliveries", status=status):
            out.append(WebhookDelivery.from_api(d))
            if limit is not None and len(out) >= limit:
                break
        return out

    def ping_webhook(self, webhook_id: int) -> WebhookDelivery:
        """Send a ``ping`` event now (checks the receiver and its secret).

        Returns:
            The queued delivery; read its outcome with :meth:`webhook_deliveries`.

        Raises:
            WebhookNotFound: no such subscription.
        """
        return WebhookDelivery.from_api(self._reg._send("POST", f"/webhooks/{int(webhook_id)}/ping"))

    def redeliver_webhook(self, webhook_id: int, delivery_id: int) -> WebhookDelivery:
        """Send a finished (succeeded or failed) delivery again, with the same id and body.

        Returns:
            The delivery, pending again.

        Raises:
            WebhookNotFound: no such delivery. Conflict: it is still pending.
        """
        path = f"/webhooks/{int(webhook_id)}/deliveries/{int(delivery_id)}/redeliver"
        return WebhookDelivery.from_api(self._reg._send("POST", path))

    @property
    def _reg(self) -> Registry:
        return cast("Registry", self)
