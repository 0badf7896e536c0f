"""The paper's applications (§5) as kinds: ``adapt`` and ``transfer``.

- ``adapt`` (§5.1, unsupervised domain adaptation): fine-tune an extractor on unlabelled
  target-domain images through the frozen RP aux head it was trained against; publish the
  result as a new extractor with ``adapted_from``, in the same compatibility group.
- ``transfer`` (§5.3, faster transfer learning): recombine a source extractor with a
  target head, fine-tune the pair on the target task, and measure it after each listed
  number of steps (0 = directly after recombination).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from partsbin.parts.data.spec import DataSpec
from partsbin.parts.jobs.kinds import JobKind, Option, register
from partsbin.parts.jobs.limits import JobCost
from partsbin.parts.jobs.settings import OPTIMISER_FIELDS
from partsbin.parts.jobs.spec import JobResult, JobSpec, percent
from partsbin.parts.spec_fields import ComponentRef

__all__ = ["AdaptSpec", "AdaptResult", "TransferSpec", "TransferResult", "CurvePoint", "UDA_ROWS"]

#: The rows of the paper's Table 2 that an ``adapt`` job measures on labelled target test
#: data: the source model as is (stored running BatchNorm statistics), with test-time
#: BatchNorm (the test batch's statistics), with BatchNorm recalibrated on the target
#: images (AdaBN), and the adapted extractor with the source head.
UdaRow = Literal["as-is", "test-bn", "recalibrated", "adapted"]
UDA_ROWS: tuple[UdaRow, ...] = ("as-is", "test-bn", "recalibrated", "adapted")

_COMMON = frozenset({"device", "threads", "eval_batch_size", "test_limit", "max_seconds", "augment"})


class AdaptSpec(JobSpec):
    """Adapt ``extractor`` to the images of ``data`` through the frozen ``rp_head``.

    ``data``'s labels, if it has any, are never read while adapting. ``test`` (labelled
    target test data) is what the evaluations measure; by default ``data`` read from its
    test split without the index and size selections, as a task's test set is. Each step
    rotates every image of the batch four ways (``settings.rp_fraction`` keeps a share).
    """

    kind: Literal["adapt"] = "adapt"
    extractor: ComponentRef = Field(description="ref of the source extractor")
    rp_head: ComponentRef = Field(
        description="ref of the RP aux head the extractor was trained against (one of its anchors)"
    )
    data: DataSpec = Field(description="the target domain's training images (read from the train split)")
    test: DataSpec | None = Field(default=None, description="labelled target test data for the evaluations")
    head: ComponentRef | None = Field(
        default=None, description="the source task head, for the evaluations (default: the extractor's sibling)"
    )
    evaluate: bool = Field(default=True, description="measure the rows of Table 2 on the target test data")
    bn_modes: list[UdaRow] = Field(default_factory=lambda: list(UDA_ROWS), description="which rows to measure")

    settings_used = OPTIMISER_FIELDS | _COMMON | {"rp_fraction"}
    # The paper minimises the RP loss for 1000 steps; fine-tuning wants a smaller lr than
    # training from scratch, and no decay to zero over so few steps. RP is adaptation's
    # only loss: every image rotated, as the paper (and the committed Table 2 results) do,
    # whatever training's default fraction is.
    settings_defaults = {"steps": 1000, "lr": 0.01, "schedule": "constant", "weight_decay": 0.0, "rp_fraction": 1.0}
    named_after = ("extractor", "-adapted")


class AdaptResult(JobResult):
    kind: Literal["adapt"] = "adapt"
    source: str = Field(description="the source extractor")
    adapted: str | None = Field(default=None, description="the adapted extractor (None with publish: false)")
    target_images: int
    head: str | None = Field(default=None, description="the source task head the rows were measured with")
    rows: dict[str, float] = Field(default_factory=dict, description="Table 2's rows: accuracy on the target test set")
    test_images: int | None = None
    note: str | None = Field(default=None, description="why nothing was measured, when nothing was")

    def figures(self) -> list[str]:
        lines = [f"adapted {self.source} on {self.target_images:,} target images"]
        lines += [
            f"{row}: {percent(acc)} on {self.test_images or 0:,} target test images" for row, acc in self.rows.items()
        ]
        if self.note:
            lines.append(self.note)
        return lines


class TransferSpec(JobSpec):
    """Recombine ``extractor`` with ``head``, fine-tune both on ``data`` (labelled, the
    head's task), and measure on ``test`` after each number of ``steps``. The run is as
    long as the largest of them; labels are matched to the head's outputs by class name,
    and images of classes the head lacks are left out."""

    kind: Literal["transfer"] = "transfer"
    extractor: ComponentRef = Field(description="ref of the source extractor")
    head: ComponentRef = Field(description="ref of the target task head")
    data: DataSpec = Field(description="the target task's training data (train split; labels by class name)")
    test: DataSpec | None = Field(default=None, description="the target task's test data")
    steps: list[int] = Field(
        default_factory=lambda: [0], min_length=1, max_length=64, description="measure after these many steps"
    )
    bn_mode: Literal["batch", "running"] = Field(default="batch", description="BatchNorm when measuring")
    publish: bool = Field(default=False, description="publish the fine-tuned extractor and head")
    post: bool = Field(default=True, description="post each point as an evaluation (finetune_steps)")

    settings_used = (OPTIMISER_FIELDS - {"steps"}) | _COMMON
    settings_defaults = {"lr": 0.01, "schedule": "constant"}
    named_after = ("extractor", "-transfer")

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        if any(s < 0 for s in v):
            raise ValueError("steps are counts of fine-tuning steps: 0 or more")
        return sorted(set(v))

    @model_validator(mode="after")
    def _publishable(self) -> TransferSpec:
        if self.publish and self.steps[-1] == 0:
            raise ValueError("publish: fine-tuned parts need at least one step (steps lists only 0)")
        return self

    def cost(self) -> JobCost:
        cost = JobCost.of(self)
        cost.steps = self.steps[-1]
        return cost


class CurvePoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    finetune_steps: int
    accuracy: float
    unrestricted: float
    samples: int
    ci95: list[float]
    epochs: float


class TransferResult(JobResult):
    kind: Literal["transfer"] = "transfer"
    extractor: str
    head: str
    curve: list[CurvePoint] = Field(default_factory=list)
    dataset: str

    def figures(self) -> list[str]:
        return [
            f"{self.extractor} + {self.head} after {p.finetune_steps:,} steps ({p.epochs:.2f} epochs): "
            f"{percent(p.accuracy)} on {p.samples:,} target test images"
            for p in self.curve
        ]


def _optimiser_options() -> tuple[Option, ...]:
    return (
        Option(("--lr",), "settings.lr", "learning rate [default: 0.01]", type=float),
        Option(("--batch-size",), "settings.batch_size", "images per step [default: 64]", type=int),
        Option(("--threads",), "settings.threads", "torch CPU threads", type=int),
    )


register(
    JobKind(
        name="adapt",
        spec=AdaptSpec,
        result=AdaptResult,
        runner="partsbin.trainer.adapt:run_adapt",
        summary="adapt an extractor to unlabelled target images through its frozen RP head (paper §5.1)",
        example={
            "extractor": "lab/fmnist-a-extractor@1",
            "rp_head": "lab/fmnist-aux-rp@1",
            "data": {"source": "fashion-mnist", "transforms": [{"op": "invert"}]},
            "settings": {"steps": 1000},
        },
        verb="adapt",
        options=(
            Option(("--extractor", "-e"), "extractor", "ref of the source extractor", required=True),
            Option(("--rp-head",), "rp_head", "ref of the RP aux head it was trained against", required=True),
            Option(
                ("--data",),
                "data",
                'the target images: a data spec as inline JSON (\'{"source": "digits", "transforms": [...]}\'), a '
                "YAML/JSON file or a source name",
                required=True,
                parse="data",
                metavar="DATASPEC",
            ),
            Option(
                ("--test",),
                "test",
                "labelled test data [default: --data's test split]",
                parse="data",
                metavar="DATASPEC",
            ),
            Option(("--head",), "head", "the source task head for the evaluations [default: its sibling]"),
            Option(("--steps",), "settings.steps", "adaptation steps [default: 1000]", type=int),
            *_optimiser_options(),
        ),
    )
)

register(
    JobKind(
        name="transfer",
        spec=TransferSpec,
        result=TransferResult,
        runner="partsbin.trainer.transfer:run_transfer",
        summary="recombine an extractor with a target head, fine-tune, and measure after each count of steps (§5.3)",
        example={
            "extractor": "lab/fmnist-a-extractor@1",
            "head": "lab/fmnist-b-head@1",
            "data": {"source": "fashion-mnist", "classes": ["sandal", "shirt", "sneaker", "bag", "ankle-boot"]},
            "steps": [0, 50, 100, 200],
        },
        verb="transfer",
        options=(
            Option(("--extractor", "-e"), "extractor", "ref of the source extractor", required=True),
            Option(("--head", "-H"), "head", "ref of the target task head", required=True),
            Option(
                ("--data",),
                "data",
                "the target task's training data: a data spec as inline JSON, a YAML/JSON file or a source name",
                required=True,
                parse="data",
                metavar="DATASPEC",
            ),
            Option(
                ("--test",),
                "test",
                "labelled test data [default: --data's test split]",
                parse="data",
                metavar="DATASPEC",
            ),
            Option(
                ("--steps",),
                "steps",
                "measure after these many fine-tuning steps, comma-separated (0 = recombined) [default: 0]",
                parse="ints",
            ),
            Option(("--publish",), "publish", "publish the fine-tuned extractor and head", type=bool),
            *_optimiser_options(),
        ),
    )
)
