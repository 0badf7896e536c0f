"""The ``fct`` job: a Forward Compatible Training transformation (Ramanujan et al., CVPR 2022)
from an old extractor's features to a new extractor's, published as a bridge (role
``transform``), with the side-information model it takes (role ``side-info``).

The new extractor is trained as usual, with no change for compatibility; the old one is
whatever was deployed. The side-information model is trained here on the *old* training
data by rotation prediction (or an existing one is named). The transform learns, with an
L2 loss on the new training data, to map old features (+ side-information) to new ones.

``space`` says which features: ``embedding`` (FCT's: globally pooled, for a gallery of
stored embeddings, :meth:`Registry.transform_gallery`) or ``junction`` (every spatial
position of the junction, so that the new model's head can classify transformed old
features: ``Registry.assemble(old, new_head, via=[transform])``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from partsbin.parts.names import InvalidName, parse_ref
from partsbin.parts.spec_fields import ComponentRef, PartName
from partsbin.parts.training_spec import DataSpec

__all__ = ["FCTSpec"]


class FCTSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["fct"] = "fct"
    name: PartName = Field(
        description="the transform's name inside the namespace (the side-info model gets NAME-side-info)"
    )
    namespace: PartName = Field(description="where the transform (and side-info model) are published")
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
    side_steps: int = Field(default=300, ge=0, le=1_000_000, description="rotation-prediction steps")
    data: DataSpec | None = Field(
        default=None, description="the transform's (new) training images (default: the new extractor's data)"
    )
    images: int | None = Field(
        default=None,
        ge=2,
        le=10_000_000,
        description=(
            "fit on at most this many training images (default: 20,000 pooled embeddings, or 5,000 images' junction "
            "features, which take H x W times the memory)"
        ),
    )
    hidden: int = Field(default=256, ge=1, le=8192, description="width of the transform's projections and MLP")
    steps: int = Field(default=800, ge=0, le=1_000_000)
    batch_size: int = Field(default=128, ge=2, le=65536)
    lr: float = Field(default=3e-3, gt=0, le=10)
    test_data: DataSpec | None = Field(
        default=None, description="retrieval / classification test images (default: the new extractor's test set)"
    )
    test_limit: int | None = Field(default=2000, ge=2, description="measure on the first N test images (all: null)")
    seed: int = 0
    threads: int | None = Field(default=None, ge=1, le=1024)
    publish: bool = True

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

    @field_validator("side_info")
    @classmethod
    def _side(cls, v: bool | str) -> bool | str:
        if isinstance(v, str):
            try:
                parse_ref(v)
            except InvalidName as exc:
                raise ValueError(f"side_info is true, false or a side-info model's ref: {exc}") from None
        return v
