"""Sends due deliveries: one thread per registry process, any number of processes.

A delivery is claimed by moving its ``next_attempt_at`` past the attempt's timeout in an
UPDATE that names the value it read (so of several processes exactly one wins, on
SQLite and on PostgreSQL alike), sent, and then recorded: a 2xx answer ends it
(``succeeded``); anything else, a timeout or a refused connection is retried after
``retry_base · 2^(attempt-1)`` seconds (capped, with 10% jitter) until
``webhook_max_attempts`` is reached (``failed``). A process that dies mid-attempt leaves
the claim to expire, and another process retries it.

Delivery is at least once and in no set order (``concurrency`` at a time, retries
later): receivers deduplicate by ``X-Partsbin-Delivery`` and order by the payload's
``created_at``, as GitHub's and Stripe's webhooks ask of theirs.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker

from partsbin import __version__
from partsbin.parts.webhook_signature import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, sign
from partsbin.registry.db.models import Webhook, WebhookDelivery, utcnow
from partsbin.registry.webhooks.targets import InvalidTarget, check_address

__all__ = ["Dispatcher", "DispatchSettings", "backoff_seconds", "body_of", "wake"]

log = logging.getLogger("partsbin.registry.webhooks")

#: Attempts kept in a delivery's history.
HISTORY = 20
#: Deliveries claimed per poll.
BATCH = 16


@dataclass(frozen=True)
class DispatchSettings:
    timeout: float = 10.0
    max_attempts: int = 8
    retry_base: float = 10.0
    retry_cap: float = 3600.0
    poll: float = 1.0
    concurrency: int = 4
    allow_private: bool = False


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    return min(cap, base * 2 ** max(0, attempt - 1)) * (1 + 0.1 * random.random())


def body_of(payload: dict[str, Any]) -> bytes:
    """The bytes that are signed and sent; the same on every attempt."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class _Claim:
    id: int
    uuid: str
    event: str
    payload: dict[str, Any]
    attempt: int
    url: str
    secret: str
    private_ok: bool
    active: bool


class Dispatcher:
    """Start with :meth:`start`, stop with :meth:`stop`; :meth:`wake` after queueing
    something that should go out now rather than at the next poll."""

    def __init__(self, factory: sessionmaker[Session], settings: DispatchSettings) -> None:
        self.factory = factory
        self.settings = settings
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._http: httpx.Client | None = None

    def start(self) -> None:
        self._http = httpx.Client(
            timeout=self.settings.timeout,
            follow_redirects=False,
            headers={"User-Agent": f"partsbin-registry/{__version__}"},
            # Deliveries go where subscribers say, never through the registry's own proxy settings.
            trust_env=False,
        )
        self._pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="webhook")
        self._thread = threading.Thread(target=self._run, name="webhook-dispatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.timeout + 5)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._http is not None:
            self._http.close()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.deliver_due()
            except Exception:  # the database may be down for a while: keep polling
                log.exception("webhook dispatch failed; retrying at the next poll")
                sent = 0
            if not sent:
                self._wake.wait(self.settings.poll)
                self._wake.clear()

    def deliver_due(self) -> int:
        """Claim what is due, send it (``concurrency`` at a time), record the outcomes."""
        claims = self._claim()
        if claims and self._pool is not None:
            list(self._pool.map(self._attempt, claims))
        return len(claims)

    def _claim(self) -> list[_Claim]:
        now = utcnow()
        lease_until = now + timedelta(seconds=self.settings.timeout + 30)
        claims: list[_Claim] = []
        with self.factory() as session:
            due = session.execute(
                sa.select(WebhookDelivery.id, WebhookDelivery.next_attempt_at)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
                .limit(BATCH)
            ).all()
            for delivery_id, seen in due:
                won = cast(
                    CursorResult[Any],
                    session.execute(
                        sa.update(WebhookDelivery)
                        .where(
                            WebhookDelivery.id == delivery_id,
                            WebhookDelivery.status == "pending",
                            WebhookDelivery.next_attempt_at == seen,
                        )
                        .values(next_attempt_at=lease_until, attempts=WebhookDelivery.attempts + 1)
                        .execution_options(synchronize_session=False)
                    ),
                ).rowcount
                session.commit()
                if not won:
                    continue
                row = session.execute(
                    sa.select(WebhookDelivery, Webhook)
                    .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                    .where(WebhookDelivery.id == delivery_id)
                ).first()
                if row is None:  # its subscription was deleted meanwhile
                    continue
                d, hook = row
                claims.append(
                    _Claim(
                        id=d.id,
                        uuid=d.uuid,
                        event=d.event,
                        payload=d.payload,
                        attempt=d.attempts,
                        url=hook.url,
                        secret=hook.secret,
                        private_ok=hook.private_ok,
                        active=hook.active,
                    )
                )
            session.commit()
        return claims

    def _send(self, claim: _Claim) -> tuple[int | None, str | None]:
        if not claim.active:
            return None, "the subscription is paused"
        if not (claim.private_ok or self.settings.allow_private):
            try:
                check_address(claim.url)
            except InvalidTarget as exc:
                return None, str(exc)
        body = body_of(claim.payload)
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: claim.event,
            DELIVERY_HEADER: claim.uuid,
            SIGNATURE_HEADER: sign(claim.secret, body),
        }
        assert self._http is not None
        try:
            # Streamed and closed unread: a receiver's answer is its status, whatever it sends.
            with self._http.stream("POST", claim.url, content=body, headers=headers) as response:
                status = response.status_code
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
        if 200 <= status < 300:
            return status, None
        return status, f"the receiver answered {status}"

    def _attempt(self, claim: _Claim) -> None:
        started = time.perf_counter()
        try:
            status, error = self._send(claim)
        except Exception as exc:  # a bug here must not end the thread or lose the delivery
            log.exception("webhook delivery %s failed unexpectedly", claim.uuid)
            status, error = None, f"{type(exc).__name__}: {exc}"[:500]
        ms = round((time.perf_counter() - started) * 1000, 1)
        now = utcnow()
        with self.factory() as session:
            d = session.get(WebhookDelivery, claim.id)
            if d is None:
                return
            d.history = [
                *(d.history or [])[-(HISTORY - 1) :],
                {"at": now.isoformat().replace("+00:00", "Z"), "status": status, "error": error, "ms": ms},
            ]
            d.response_status, d.error = status, error
            if error is None:
                d.status, d.delivered_at = "succeeded", now
            elif claim.attempt >= self.settings.max_attempts or not claim.active:
                d.status = "failed"
            else:
                wait = backoff_seconds(claim.attempt, self.settings.retry_base, self.settings.retry_cap)
                d.next_attempt_at = now + timedelta(seconds=wait)
            session.commit()
        log.info(
            "webhook %s %s attempt %d: %s",
            claim.event,
            claim.uuid,
            claim.attempt,
            status if error is None else error,
            extra={"webhook_delivery": claim.uuid, "attempt": claim.attempt, "ms": ms},
        )


def wake(app: Any) -> None:
    """After queueing a delivery someone waits for (a ping, a redelivery): send it now,
    not at the next poll. ``app`` is the FastAPI application."""
    dispatcher = getattr(app.state, "dispatcher", None)
    if dispatcher is not None:
        dispatcher.wake()
