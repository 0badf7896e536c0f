"""The ``evaluate`` kind: one extractor against a batch of heads, measured by a worker and
posted as evaluations (``partsbin bench --distributed`` splits a matrix into these)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from partsbin.parts.data.spec import DataSpec
from partsbin.parts.jobs.kinds import JobKind, register
from partsbin.parts.jobs.spec import JobResult, JobSpec, percent
from partsbin.parts.spec_fields import ComponentRef

__all__ = ["EvaluateSpec", "EvaluateResult", "CellResult"]


class EvaluateSpec(JobSpec):
    kind: Literal["evaluate"] = "evaluate"
    extractor: ComponentRef = Field(description="ref of the extractor")
    heads: list[ComponentRef] = Field(min_length=1, max_length=256, description="refs of the heads (task or aux)")
    bn_mode: Literal["batch", "running", "recalibrate"] = "batch"
    batch_composition: Literal["common-classes", "all-classes"] = "common-classes"
    shuffle_seed: int = Field(default=0, ge=0, le=2**63 - 1)
    test: DataSpec | None = Field(default=None, description="the extractor's test data, if not the card's")
    publish: bool = Field(default=True, description="post the results as evaluations")

    settings_used = frozenset({"device", "threads", "eval_batch_size", "max_seconds"})
    named_after = ("extractor", "-evaluate")


class CellResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    extractor: str
    head: str
    accuracy: float
    unrestricted: float
    samples: int
    classes: int
    own_task: bool


class EvaluateResult(JobResult):
    kind: Literal["evaluate"] = "evaluate"
    cells: list[CellResult] = Field(default_factory=list)

    def figures(self) -> list[str]:
        return [
            f"{c.extractor} + {c.head}: {percent(c.accuracy)} on {c.samples:,} images"
            + (" (own task)" if c.own_task else "")
            for c in self.cells
        ]


register(
    JobKind(
        name="evaluate",
        spec=EvaluateSpec,
        result=EvaluateResult,
        runner="partsbin.trainer.evaluate:run_evaluate",
        summary="measure one extractor with a batch of heads and post the cells as evaluations",
        example={
            "name": "fmnist-a-matrix",
            "namespace": "lab",
            "extractor": "lab/fmnist-a-extractor@1",
            "heads": ["lab/fmnist-a-head@1", "lab/fmnist-b-head@1"],
        },
    )
)
