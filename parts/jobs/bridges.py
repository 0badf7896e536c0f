"""Bridges between parts trained apart, as kinds: ``stitch`` (an adapter) and ``fct``
(a Forward Compatible Training transform, with its side-information model).

``stitch``, ``method="trained"``, trains a 1×1 convolution (+ BatchNorm) with the head's
task loss while both parts stay frozen (Bansal et al. 2021, "Revisiting model
stitching"). The closed-form methods fit the same layer with no training, on the
features both sides give for shared images (Maiorca et al. 2023): ``least-squares`` (any
linear map plus a bias) or ``procrustes`` (an orthogonal map after centring; equal
channel counts only). They need the features the head expects: those of
``target_extractor`` (default: the head's sibling, the extractor it was trained with).

``fct`` (Ramanujan et al., CVPR 2022): the new extractor is trained as usual; the
side-information model is trained here on the *old* training data by rotation prediction
(or an existing one is named), and the transform learns, with an L2 loss on the new
training data, to map old features (+ side-information) to new ones. ``space`` says
which features: ``embedding`` (globally pooled, for a stored gallery,
``Registry.transform_gallery``) or ``junction`` (every position of the junction, so that
the new head classifies transformed old features: ``assemble(old, new_head, via=[t])``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from partsbin.parts.data.spec import DataSpec
from partsbin.parts.jobs.kinds import JobKind, Option, register
from partsbin.parts.jobs.limits import JobCost, parameter_count
from partsbin.parts.jobs.settings import OPTIMISER_FIELDS
from partsbin.parts.jobs.spec import JobResult, JobSpec, percent
from partsbin.parts.names import InvalidName, parse_ref
from partsbin.parts.spec_fields import ComponentRef

__all__ = ["StitchSpec", "StitchResult", "FCTSpec", "FCTResult", "STITCH_METHODS"]

STITCH_METHODS = ("trained", "least-squares", "procrustes")
_COMMON = frozenset({"device", "threads", "eval_batch_size", "test_limit", "max_seconds"})


class StitchSpec(JobSpec):
    kind: Literal["stitch"] = "stitch"
    extractor: ComponentRef = Field(description="ref of the extractor whose features go in (bridge.from)")
    head: ComponentRef = Field(description="ref of the head they are fed to")
    bridge_to: Literal["head", "group"] = Field(
        default="head", description="the card's bridge.to: the head's digest, or its group's anchor (every head of it)"
    )
    method: Literal["trained", "least-squares", "procrustes"] = "trained"
    target_extractor: ComponentRef | None = Field(
        default=None,
        description="closed-form fits: the extractor whose features the head expects (default: its sibling)",
    )
    data: DataSpec | None = Field(
        default=None, description="labelled training images (default: the extractor's recorded training data)"
    )
    test: DataSpec | None = Field(default=None, description="test images (default: the extractor's test set)")
    batchnorm: bool = True
    fit_images: int = Field(default=2000, ge=2, description="closed-form fits: shared images used")

    settings_used = OPTIMISER_FIELDS | _COMMON
    settings_defaults = {"optimizer": "adam", "lr": 0.01, "schedule": "constant", "weight_decay": 0.0, "steps": 200}

    def cost(self) -> JobCost:
        cost = JobCost.of(self)
        if self.method != "trained":
            cost.steps = 0
            cost.images = max(cost.images, self.fit_images)
        return cost


class StitchResult(JobResult):
    kind: Literal["stitch"] = "stitch"
    extractor: str
    head: str
    method: str
    recombination_accuracy: float = Field(description="through the adapter")
    adapter_free_accuracy: float | None = Field(description="the same pair without it (None: interfaces differ)")
    adapter_parameters: int
    extractor_parameters: int
    head_parameters: int
    test_images: int
    chance: float
    fit_images: int | None = None
    feature_mse: float | None = None
    train_loss: dict[str, float | None] | None = None

    def figures(self) -> list[str]:
        free = "n/a (interfaces differ)" if self.adapter_free_accuracy is None else percent(self.adapter_free_accuracy)
        return [
            f"{self.extractor} → {self.head} on {self.test_images:,} test images: adapter-free {free}, with the "
            f"{self.method} adapter {percent(self.recombination_accuracy)} ({self.adapter_parameters:,} adapter "
            f"parameters; extractor {self.extractor_parameters:,}, head {self.head_parameters:,}; chance "
            f"{percent(self.chance)})"
        ]


class FCTSpec(JobSpec):
    kind: Literal["fct"] = "fct"
    old_extractor: ComponentRef = Field(description="ref of the old extractor (bridge.from)")
    new_extractor: ComponentRef = Field(description="ref of the new extractor (bridge.to)")
    new_head: ComponentRef | None = Field(
        default=None,
        description="junction space: the new model's head, to measure it on transformed old features (and post that)",
    )
    space: Literal["embedding", "junction"] = Field(
        default="embedding", description="map pooled embeddings (a stored gallery) or junction features (for heads)"
    )
    side_info: bool | str = Field(
        default=True,
        description="train a side-info model on the old data (true), use a stored one (its ref), or none (false)",
    )
    side_data: DataSpec | None = Field(
        default=None, description="the side-info model's (old) training images (default: the old extractor's data)"
    )
    side_dim: int = Field(default=16, ge=1, le=4096, description="length of the side-information vector")
    side_width: int = Field(default=8, ge=1, le=256, description="width of the side-info network")
    side_steps: int = Field(default=300, ge=0, description="rotation-prediction steps")
    data: DataSpec | None = Field(
        default=None, description="the transform's (new) training images (default: the new extractor's data)"
    )
    images: int | None = Field(
        default=None,
        ge=2,
        description=(
            "fit on at most this many training images (default: 20,000 pooled embeddings, or 5,000 images' junction "
            "features, which take H x W times the memory)"
        ),
    )
    hidden: int = Field(default=256, ge=1, le=8192, description="width of the transform's projections and MLP")
    test: DataSpec | None = Field(
        default=None, description="retrieval / classification test images (default: the new extractor's test set)"
    )

    settings_used = OPTIMISER_FIELDS | _COMMON
    settings_defaults = {
        "optimizer": "adam",
        "lr": 3e-3,
        "schedule": "cosine",
        "weight_decay": 0.0,
        "steps": 800,
        "batch_size": 128,
        "test_limit": 2000,
    }

    @field_validator("side_info")
    @classmethod
    def _side(cls, v: bool | str) -> bool | str:
        if isinstance(v, str):
            try:
                parse_ref(v)
            except InvalidName as exc:
                raise ValueError(f"side_info is true, false or a side-info model's ref: {exc}") from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> FCTSpec:
        if self.new_head is not None and self.space != "junction":
            raise ValueError("new_head measures a transform of junction features: set space to 'junction'")
        if self.side_info is not True:
            # Compared with the defaults, not with the fields given: a stored spec is
            # dumped whole and validated again when a worker runs it.
            fields = type(self).model_fields
            unused = [
                k
                for k in ("side_data", "side_dim", "side_width", "side_steps")
                if getattr(self, k) != fields[k].default
            ]
            if unused:
                raise ValueError(
                    f"{', '.join(unused)} describe(s) a side-info model trained here; with side_info "
                    f"{self.side_info!r} none is trained: leave them out"
                )
        return self

    @property
    def fit_images(self) -> int:
        return self.images if self.images is not None else (20000 if self.space == "embedding" else 5000)

    def cost(self) -> JobCost:
        cost = JobCost.of(self)
        cost.steps = self.settings.steps + (self.side_steps if self.side_info is True else 0)
        cost.images = max(cost.images, self.fit_images)
        # The transform's channels come from the extractors (not known here): counted at `hidden`.
        h = self.hidden
        cost.params = parameter_count(
            "fct_transform", {"in_chans": h, "side_chans": self.side_dim, "out_chans": h, "hidden": h}
        )
        if self.side_info is True:
            cost.params += parameter_count("side_info", {"in_chans": 3, "width": self.side_width, "dim": self.side_dim})
        return cost


class FCTResult(JobResult):
    kind: Literal["fct"] = "fct"
    old_extractor: str
    new_extractor: str
    space: str
    side_info: bool
    fit_images: int
    test_images: int
    retrieval: dict[str, dict[str, float]]
    top1_gap_closed: float | None = None
    classification: dict[str, Any] | None = None

    def figures(self) -> list[str]:
        r = self.retrieval
        lines = [
            f"{self.old_extractor} → {self.new_extractor} ({self.space}s, "
            f"{'with' if self.side_info else 'no'} side-information), retrieval top-1 on {self.test_images:,} test "
            f"images: old/old {percent(r['old/old']['top1'])}, new/new {percent(r['new/new']['top1'])}, "
            f"new/transformed old {percent(r['new/transformed old']['top1'])}"
        ]
        c = self.classification
        if c is not None:
            free = "n/a (interfaces differ)" if c["no_bridge"] is None else percent(c["no_bridge"])
            lines.append(
                f"classification with {c['head']}: transformed old features {percent(c['transformed_old'])}, new "
                f"model {percent(c['new'])}, old features with no bridge {free}"
            )
        return lines


register(
    JobKind(
        name="stitch",
        spec=StitchSpec,
        result=StitchResult,
        runner="partsbin.trainer.stitch:run_stitch",
        summary="make an adapter (1x1 convolution + BatchNorm) from an extractor's features to a head trained apart",
        example={
            "name": "fmnist-a-to-b",
            "namespace": "lab",
            "extractor": "lab/fmnist-a-extractor@1",
            "head": "other/fmnist-b-head@1",
            "settings": {"steps": 200},
        },
        verb="stitch",
        options=(
            Option(("--extractor",), "extractor", "ref of the extractor (the bridge's 'from')", required=True),
            Option(("--head",), "head", "ref of the head its features go to", required=True),
            Option(
                ("--data",),
                "data",
                "labelled training data: a data spec as JSON, a file or a source name (default: the extractor's)",
                parse="data",
                metavar="DATASPEC",
            ),
            Option(
                ("--test",), "test", "test data (default: the extractor's test set)", parse="data", metavar="DATASPEC"
            ),
            Option(("--steps",), "settings.steps", "training steps (method 'trained') [default: 200]", type=int),
            Option(("--method",), "method", "trained, least-squares or procrustes [default: trained]"),
            Option(
                ("--to-group",), "bridge_to", "bridge to the head's group, not the head alone", type=bool, value="group"
            ),
            Option(("--test-limit",), "settings.test_limit", "evaluate on the first N test images", type=int),
        ),
    )
)

register(
    JobKind(
        name="fct",
        spec=FCTSpec,
        result=FCTResult,
        runner="partsbin.trainer.fct_job:run_fct",
        summary="train a Forward Compatible Training transform (+ side-information) from old features to new ones",
        example={
            "name": "fmnist-a-v1-to-v2",
            "namespace": "lab",
            "old_extractor": "lab/fmnist-a-extractor@1",
            "new_extractor": "lab/fmnist-a-extractor@2",
        },
        verb="fct",
        options=(
            Option(("--old",), "old_extractor", "ref of the old extractor (the bridge's 'from')", required=True),
            Option(("--new",), "new_extractor", "ref of the new extractor (the bridge's 'to')", required=True),
            Option(
                ("--space",),
                "space",
                "embedding (a stored gallery of pooled features) or junction (for the new model's head)",
            ),
            Option(
                ("--side-info",),
                "side_info",
                "'train' (on the old data), 'none', or the ref of a stored side-info model",
                parse="ref-or-bool",
            ),
            Option(
                ("--data",),
                "data",
                "the transform's training images: a data spec as JSON, a file or a source name (default: new's)",
                parse="data",
                metavar="DATASPEC",
            ),
            Option(
                ("--new-head",),
                "new_head",
                "junction space: the new model's head, measured on transformed old features",
            ),
            Option(("--steps",), "settings.steps", "transform training steps [default: 800]", type=int),
            Option(
                ("--images",),
                "images",
                "fit on this many training images (default: 20,000; junction space 5,000)",
                type=int,
            ),
            Option(
                ("--test-limit",), "settings.test_limit", "measure on the first N test images [default: 2000]", type=int
            ),
        ),
    )
)
