"""The ``evaluate`` job: one extractor against a batch of heads, measured by a worker and
posted as evaluations (``partsbin bench --distributed`` splits a matrix into these)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from partsbin.parts.spec_fields import ComponentRef, PartName
from partsbin.parts.training_spec import DataSpec

__all__ = ["EvaluateSpec"]


class EvaluateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["evaluate"] = "evaluate"
    name: PartName = Field(description="a label for the job")
    namespace: PartName = Field(description="the namespace the job belongs to (workers claim by namespace)")
    extractor: ComponentRef = Field(description="ref of the extractor")
    heads: list[ComponentRef] = Field(min_length=1, max_length=256, description="refs of the heads (task or aux)")
    bn_mode: Literal["batch", "running", "recalibrate"] = "batch"
    batch_size: int = Field(default=256, ge=2, le=65536)
    batch_composition: Literal["common-classes", "all-classes"] = "common-classes"
    shuffle_seed: int = Field(default=0, ge=0)
    threads: int | None = Field(default=None, ge=1, le=1024, description="default: the CPUs the worker may use")
    data: DataSpec | None = Field(default=None, description="the extractor's test data, if not the card's")
    publish: bool = Field(default=True, description="post the results as evaluations")
