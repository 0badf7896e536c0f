"""Response and request bodies of the API, every one of them, by topic: components,
compatibility (groups, /compatible, /paths), datasets, evaluations, jobs, direct
uploads, tokens, webhooks. Each has its own name, which is its name in OpenAPI's
``components.schemas``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from partsbin.parts.jsonlimits import JsonObject
from partsbin.registry.api.params import JSON_INT_MAX, NamespaceStr, RefStr
from partsbin.registry.db.models import Component, Dataset


class Body(BaseModel):
    """A request body: types as declared (no "true" for a boolean, no "3" for a number)
    and no unknown fields, so a typo is an error rather than silently ignored."""

    model_config = ConfigDict(strict=True, extra="forbid")


def _whole(value: Any) -> Any:
    """A whole number written with a fraction (``3.0``) as the integer it is: JSON does
    not tell 3.0 from 3, nor does the document's JSON Schema (2020-12: "integer" is any
    number whose fraction is zero). ``3.5``, ``"3"`` and ``true`` stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: An integer field of a request body.
Int = Annotated[int, BeforeValidator(_whole)]


# -- components -------------------------------------------------------------------------------
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


class AliasIn(Body):
    version: Int = Field(ge=1, le=JSON_INT_MAX)


class AliasOut(BaseModel):
    name: str
    alias: str
    version: int
    updated_at: datetime


class YankIn(Body):
    reason: str = Field(min_length=1, max_length=2000)


# -- compatibility: groups, /compatible, /paths ------------------------------------------------
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
    junction_layout: str = Field(default="spatial", description="'spatial' (N×C×H×W) or 'tokens' (N×T×D)")
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


class PathStep(BaseModel):
    kind: Literal["group", "sibling", "measured", "adapter", "transform"]
    why: str
    component: str | None = Field(default=None, description="the bridge's ref, for a bridge step")
    digest: str | None = None
    anchor: str | None = None


class PathOut(BaseModel):
    kind: Literal["direct", "bridged"]
    bridges: list[str] = Field(description="refs of the bridges, in order (empty when direct)")
    via: list[str] = Field(description="their digests: what an evaluation of this path names in details.via")
    steps: list[PathStep]
    status: Literal["measured", "unmeasured", "measured: not compatible"]
    composable: bool = Field(
        description=(
            "assemble() can build it as one module: adapters and transforms of junction features (FCT transforms "
            "of pooled embeddings are for a stored gallery: Registry.transform_gallery)"
        )
    )
    measured_accuracy: float | None = None
    evaluation_id: int | None = None


class PathsOut(BaseModel):
    extractor: str
    head: str
    max_bridges: int
    total: int = Field(description="paths found (every page)")
    paths: list[PathOut]
    next_cursor: str | None = Field(default=None, description="pass as ?cursor= for the next page, best first")


# -- datasets ---------------------------------------------------------------------------------
class DatasetOut(BaseModel):
    ref: str = Field(description="ns/name@version")
    name: str
    version: int
    digest: str
    size: int
    format: str
    created_at: datetime
    card: dict[str, Any]

    @classmethod
    def of(cls, d: Dataset) -> DatasetOut:
        return cls(
            ref=d.ref,
            name=d.full_name,
            version=d.version,
            digest=f"sha256:{d.digest}",
            size=d.size,
            format=d.format,
            created_at=d.created_at,
            card=d.card,
        )


class DatasetPage(BaseModel):
    items: list[DatasetOut]
    next_cursor: str | None = None


# -- evaluations ------------------------------------------------------------------------------
# Inside the 32-bit integer columns of every database.
INT32_MAX = 2**31 - 1


class EvaluationIn(Body):
    # What the route checks across fields, said in the document (OpenAPI 3.1 is JSON Schema
    # 2020-12): job_id and lease_id come together, and an accuracy (the default metric is
    # one) lies in [0, 1].
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {
                        "properties": {"job_id": {"type": "integer", "minimum": 1, "maximum": JSON_INT_MAX}},
                        "required": ["job_id"],
                    },
                    "then": {"properties": {"lease_id": {"type": "string", "maxLength": 64}}, "required": ["lease_id"]},
                    "else": {"properties": {"lease_id": {"type": "null"}}},
                },
                {
                    "if": {"properties": {"metric": {"not": {"pattern": "accuracy$"}}}, "required": ["metric"]},
                    "else": {"properties": {"value": {"minimum": 0, "maximum": 1}}},
                },
            ]
        }
    )

    extractor: RefStr = Field(description="ref of the extractor", max_length=300)
    head: RefStr = Field(description="ref of the head (task or aux)", max_length=300)
    dataset: str = Field(min_length=1, max_length=200)
    metric: str = Field(default="recombination_accuracy", min_length=1, max_length=64)
    value: float = Field(allow_inf_nan=False)
    samples: Int = Field(ge=1, le=INT32_MAX)
    bn_mode: Literal["batch", "running", "recalibrated"]
    batch_size: Int | None = Field(default=None, ge=1, le=INT32_MAX)
    classes: Int | None = Field(
        default=None, ge=1, le=INT32_MAX, description="classes the prediction was over; chance level is 1/classes"
    )
    job_id: Int | None = Field(
        default=None, ge=1, le=JSON_INT_MAX, description="a worker: the job it measured this for"
    )
    lease_id: str | None = Field(default=None, max_length=64, description="a worker: its lease of that job")
    data_digest: str | None = Field(
        default=None,
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="content digest of the test images measured; equal to the test set the extractor's card "
        "records, the measurement is the pair's recombination accuracy",
    )
    details: JsonObject = Field(
        default_factory=dict,
        json_schema_extra={
            "properties": {
                "finetune_steps": {
                    "anyOf": [{"type": "integer", "minimum": 0, "maximum": INT32_MAX}, {"type": "null"}],
                    "description": "steps of fine-tuning after recombining",
                }
            }
        },
    )

    @field_validator("details")
    @classmethod
    def _finetune_steps(cls, v: dict[str, Any]) -> dict[str, Any]:
        steps = _whole(v.get("finetune_steps"))
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= INT32_MAX):
            raise ValueError("details.finetune_steps counts fine-tuning steps after recombining: an integer, 0 or more")
        if steps is not None:
            v["finetune_steps"] = steps
        return v


class EvaluationOut(BaseModel):
    id: int
    extractor: str
    head: str
    dataset: str
    metric: str
    value: float
    samples: int
    bn_mode: str
    batch_size: int | None
    classes: int | None
    details: dict[str, Any]
    created_at: datetime
    posted_by: int | None = Field(description="id of the token that posted it")
    trust: Literal["admin", "owner", "worker", "third-party"] = Field(
        description="who vouches for it; only third-party evaluations do not rank /compatible"
    )
    job_id: int | None
    data_digest: str | None = Field(description="content digest of the test images measured")
    own_test: bool = Field(
        description="measured on the extractor's own test set as its card records it: the pair's recombination "
        "accuracy (ranks /compatible and fills heatmaps when trusted, in batch mode)"
    )
    finetune_steps: int | None = Field(
        default=None, description="steps of fine-tuning after recombining (a transfer curve's point; from details)"
    )


# -- jobs -------------------------------------------------------------------------------------
LEASE_SECONDS_DEFAULT = 60.0


class JobOut(BaseModel):
    id: int
    kind: str
    origin: str = Field(description="user (submitted with a token) or registry (queued by the registry itself)")
    status: str
    namespace: str
    spec: dict[str, Any]
    attempts: int
    max_attempts: int
    worker: str | None
    lease_id: str | None = Field(default=None, description="only in the answer to a claim")
    lease_expires_at: datetime | None
    progress: dict[str, Any] | None
    cancel_requested: bool
    result_refs: list[str] | None
    result: dict[str, Any] | None = Field(description="the kind's result: what the job measured and published")
    summary: list[str] = Field(description="the result, said for people")
    error: str | None = Field(description="why the job failed: the message")
    error_detail: str | None = Field(default=None, description="the worker's traceback (admin tokens only)")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = None


class SubmitIn(Body):
    spec: JsonObject
    max_attempts: Int = Field(default=3, ge=1, le=20)


class ClaimIn(Body):
    worker: str = Field(min_length=1, max_length=200)
    lease_seconds: float = Field(default=LEASE_SECONDS_DEFAULT, ge=1, le=3600)


LeaseId = Annotated[str, Field(min_length=1, max_length=64)]


class HeartbeatIn(Body):
    lease_id: LeaseId
    lease_seconds: float = Field(default=LEASE_SECONDS_DEFAULT, ge=1, le=3600)
    progress: JsonObject | None = None


class JobCompleteIn(Body):
    lease_id: LeaseId
    refs: list[Annotated[str, Field(max_length=300)]] = Field(default_factory=list, max_length=1000)
    progress: JsonObject | None = Field(
        default=None,
        description="the final progress (last step, loss, each task's accuracy); replaces the last heartbeat's",
    )
    result: JsonObject | None = Field(default=None, description="the kind's result model (checked against it)")


class FailIn(Body):
    lease_id: LeaseId
    error: str = Field(max_length=20000, description="the message every reader of the job sees")
    detail: str | None = Field(default=None, max_length=20000, description="the traceback: shown to admins only")
    retry: bool = False


class LeaseIn(Body):
    lease_id: LeaseId


# -- uploads straight to S3 (api/routes/uploads.py) --------------------------------------------
MIN_PART = 8 * 1024**2  # S3 refuses parts under 5 MiB but the last
MAX_PARTS = 10_000  # S3's limit


class UploadIn(Body):
    size: Int = Field(ge=8, le=JSON_INT_MAX, description="bytes of the file")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex sha256 of the file, checked before it is recorded")
    part_size: Int = Field(default=64 * 1024**2, ge=MIN_PART, le=5 * 1024**3)


class UploadOut(Body):
    upload_id: str
    multipart_id: str = Field(description="send it back with the parts' ETags")
    part_size: int
    urls: list[str] = Field(description="a presigned PUT URL per part, in order; bytes [i*part_size, (i+1)*part_size)")
    expires_in: int = Field(description="seconds the URLs stay valid")


class UploadCompleteIn(Body):
    multipart_id: str = Field(min_length=1, max_length=1024)
    etags: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(min_length=1, max_length=MAX_PARTS)
    card: str | None = Field(default=None, max_length=1024 * 1024, description="the card (JSON), unless embedded")


class AbortIn(Body):
    multipart_id: str = Field(min_length=1, max_length=1024)


# -- architectures ----------------------------------------------------------------------------
class ArchOut(BaseModel):
    name: str
    distribution: str | None = Field(
        description="the Python distribution that registers it (partsbin for the built-ins); null: not an installed one"
    )
    version: str | None = Field(description="that distribution's version")
    split_points: list[str] | None = Field(
        description="where the default configuration splits; null where the configuration has required fields"
    )
    default_split: str | None
    config_schema: dict[str, Any] = Field(description="JSON Schema of arch.config, with its bounds")


# -- tokens -----------------------------------------------------------------------------------
class WhoAmI(BaseModel):
    token_id: int | None = Field(description="null for an anonymous caller")
    scope: str = Field(description="anonymous, read, publish or admin")
    namespaces: list[str] = Field(description="where a publish token may publish")
    owner: bool = Field(description="a publish token that also moves aliases and yanks in its namespaces")


class TokenIn(Body):
    # A publish token names the namespaces it publishes into; only a publish token is an owner.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"scope": {"const": "publish"}}},
            "then": {"properties": {"namespaces": {"minItems": 1}}, "required": ["namespaces"]},
            "else": {"properties": {"owner": {"const": False}}},
        }
    )

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


# -- webhooks ---------------------------------------------------------------------------------
#: What ``webhooks/targets.check_url`` takes: http(s), a host, a port from 1 to 65535 if
#: any, no user or password (no '@' before the path), printable ASCII. The host's
#: addresses are checked when the subscription is made (private ones: admins only).
WEBHOOK_URL_PATTERN = (
    r"^https?://[A-Za-z0-9._~-]+"
    r"(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
    r"([/?#][!-~]*)?$"
)
WebhookEvent = Literal["component.published", "evaluation.recorded", "alias.moved", "version.yanked", "job.finished"]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=2048,
        description="http(s) URL the registry POSTs each event to",
        json_schema_extra={"pattern": WEBHOOK_URL_PATTERN},
    )
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
