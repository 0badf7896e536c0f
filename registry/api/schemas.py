"""Response and request bodies of the API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from partsbin.parts.names import INT64_MAX
from partsbin.registry.api.params import NamespaceStr
from partsbin.registry.db.models import Component


class Body(BaseModel):
    """A request body: types as declared (no "true" for a boolean, no "3" for a number)
    and no unknown fields, so a typo is an error rather than silently ignored."""

    model_config = ConfigDict(strict=True, extra="forbid")


class ComponentOut(BaseModel):
    ref: str = Field(description="ns/name@version")
    name: str
    version: int
    digest: str
    size: int
    role: str
    arch: str
    created_at: datetime
    yanked: bool
    yank_reason: str | None = None
    card: dict[str, Any]

    @classmethod
    def of(cls, c: Component) -> ComponentOut:
        return cls(
            ref=c.ref,
            name=c.full_name,
            version=c.version,
            digest=f"sha256:{c.digest}",
            size=c.size,
            role=c.role,
            arch=c.arch_name,
            created_at=c.created_at,
            yanked=c.yanked_at is not None,
            yank_reason=c.yank_reason,
            card=c.card,
        )


class ComponentPage(BaseModel):
    items: list[ComponentOut]
    next_cursor: str | None = None


class Reason(BaseModel):
    kind: Literal["declared", "measured", "third-party"] = Field(
        description="declared: a shared anchor; measured: an evaluation the pair's owners vouch for; "
        "third-party: an evaluation by anyone else, shown but not ranked on"
    )
    detail: str
    anchor: str | None = None
    anchor_ref: str | None = None
    evaluation_id: int | None = None
    trust: Literal["admin", "owner", "worker", "third-party"] | None = None


class CompatibleItem(BaseModel):
    component: ComponentOut
    role: str
    status: Literal["measured", "declared, unmeasured", "measured: not compatible"] = Field(
        description="ranked in this order; 'measured: not compatible' is at chance level"
    )
    reasons: list[Reason]
    measured_accuracy: float | None = None
    evaluation_id: int | None = Field(default=None, description="the evaluation the measured accuracy comes from")
    via: list[str] | None = Field(
        default=None, description="the bridges (refs) needed between the two parts; absent when they meet directly"
    )


class CompatiblePage(BaseModel):
    query: str
    items: list[CompatibleItem]
    next_cursor: str | None = None


class GroupOut(BaseModel):
    id: str = Field(description="sha256 hex digest of the anchor aux head")
    kind: str
    junction_channels: int
    anchor: ComponentOut
    members: int


class GroupDetail(GroupOut):
    queued_evaluations: int = Field(
        default=0, description="pairs of the group the registry queued for its workers to measure, not yet measured"
    )
    member_items: list[ComponentOut]
    next_cursor: str | None = None


class GroupPage(BaseModel):
    items: list[GroupOut]
    next_cursor: str | None = None


class AliasIn(Body):
    version: int = Field(ge=1, le=INT64_MAX)


class AliasOut(BaseModel):
    name: str
    alias: str
    version: int
    updated_at: datetime


class YankIn(Body):
    reason: str = Field(min_length=1, max_length=2000)


class TokenIn(Body):
    scope: Literal["read", "publish", "admin"]
    name: str = Field(default="", max_length=200)
    namespaces: list[NamespaceStr] = Field(default_factory=list, max_length=1000)
    owner: bool = False
    # A century at most: later expiry dates overflow the date types.
    expires_in_days: float | None = Field(default=None, gt=0, le=36500, allow_inf_nan=False)


class TokenOut(BaseModel):
    id: int
    prefix: str
    name: str
    scope: str
    namespaces: list[str]
    owner: bool
    created_at: datetime
    expires_at: datetime | None
    revoked: bool


class TokenCreated(TokenOut):
    token: str = Field(description="shown once; only its hash is stored")


WebhookEvent = Literal["component.published", "evaluation.recorded", "alias.moved", "version.yanked", "job.finished"]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2048, description="http(s) URL the registry POSTs each event to")
    events: list[WebhookEvent] | None = Field(
        default=None, max_length=16, description="the events to send; default: every event"
    )
    namespace: NamespaceStr | None = Field(default=None, description="whose events; none: every namespace (admins)")
    description: str = Field(default="", max_length=200)
    secret: str | None = Field(
        default=None, min_length=16, max_length=128, description="the HMAC-SHA256 key; default: one is made"
    )


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: bool | None = Field(default=None, description="false pauses deliveries; pending ones then fail")
    events: list[WebhookEvent] | None = Field(default=None, min_length=1, max_length=16)
    description: str | None = Field(default=None, max_length=200)


class WebhookOut(BaseModel):
    id: int
    url: str
    namespace: str | None
    events: list[str]
    description: str
    active: bool
    created_at: datetime
    #: How its last deliveries went: counts by status.
    deliveries: dict[str, int] = Field(default_factory=dict)


class WebhookCreated(WebhookOut):
    secret: str = Field(
        description="the signing key: shown once here; receivers check X-Partsbin-Signature-256 with it"
    )


class WebhookDeliveryOut(BaseModel):
    id: int
    uuid: str = Field(description="the X-Partsbin-Delivery header; a redelivery keeps it")
    webhook_id: int
    event: str
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: datetime | None = Field(description="when a pending delivery is tried next")
    response_status: int | None
    error: str | None
    history: list[dict[str, Any]] = Field(description="every attempt: at, status, error, ms (the last 20)")
    payload: dict[str, Any]
    created_at: datetime
    delivered_at: datetime | None


class WebhookDeliveryPage(BaseModel):
    items: list[WebhookDeliveryOut]
    next_cursor: str | None = None
