"""The ``stitch`` job: a bridge (role ``adapter``) from an extractor to a head trained apart.

``method="trained"`` trains a 1×1 convolution (+ BatchNorm) with the head's task loss while
both parts stay frozen (Bansal et al. 2021, "Revisiting model stitching"). The closed-form
methods fit the same layer with no training, on the features both sides give for shared
images (Maiorca et al. 2023): ``least-squares`` (any linear map plus a bias) or
``procrustes`` (an orthogonal map after centring; equal channel counts only). They need the
features the head expects: those of ``target_extractor`` (default: the head's sibling, the
extractor it was trained with).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from partsbin.parts.spec_fields import ComponentRef, PartName
from partsbin.parts.training_spec import DataSpec

__all__ = ["StitchSpec", "STITCH_METHODS"]

STITCH_METHODS = ("trained", "least-squares", "procrustes")


class StitchSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["stitch"] = "stitch"
    name: PartName = Field(description="the adapter's name inside the namespace")
    namespace: PartName = Field(description="where the adapter is published")
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
    test_data: DataSpec | None = Field(default=None, description="test images (default: the extractor's test set)")
    test_limit: int | None = Field(default=None, ge=1, description="evaluate on the first N test images")
    steps: int = Field(default=200, ge=0, le=1_000_000)
    batch_size: int = Field(default=64, ge=2, le=65536)
    lr: float = Field(default=0.01, gt=0, le=10)
    batchnorm: bool = True
    fit_images: int = Field(default=2000, ge=2, le=1_000_000, description="closed-form fits: shared images used")
    seed: int = 0
    threads: int | None = Field(default=None, ge=1, le=1024)
    publish: bool = True
