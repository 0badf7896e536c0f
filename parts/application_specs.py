"""Job specs of the paper's applications (§5): ``adapt`` and ``transfer``.

- ``adapt`` (§5.1, unsupervised domain adaptation): fine-tune an extractor on unlabelled
  target-domain images through the frozen RP aux head it was trained against; publish the
  result as a new extractor with ``adapted_from``, in the same compatibility group.
- ``transfer`` (§5.3, faster transfer learning): recombine a source extractor with a
  target head, fine-tune the pair on the target task, and measure it after each listed
  number of steps (0 = directly after recombination).

They live in the shared core, beside :class:`~partsbin.parts.training_spec.TrainSpec`, so
the registry validates them at submission without importing the trainer.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from partsbin.parts.spec_fields import ComponentRef, PartName
from partsbin.parts.training_spec import DataSpec, Settings

__all__ = ["AdaptSpec", "TransferSpec", "UDA_ROWS", "adapt_defaults", "transfer_defaults"]

#: The rows of the paper's Table 2 that an ``adapt`` job measures on labelled target test
#: data: the source model as is (stored running BatchNorm statistics), with test-time
#: BatchNorm (the test batch's statistics), with BatchNorm recalibrated on the target
#: images (AdaBN), and the adapted extractor with the source head.
UdaRow = Literal["as-is", "test-bn", "recalibrated", "adapted"]
UDA_ROWS: tuple[UdaRow, ...] = ("as-is", "test-bn", "recalibrated", "adapted")


def adapt_defaults() -> Settings:
    # The paper minimises the RP loss for 1000 steps; fine-tuning wants a smaller lr than
    # training from scratch, and no decay to zero over so few steps.
    # RP is adaptation's only loss: every image rotated, as the paper (and the committed
    # Table 2 results) do, whatever training's default fraction is.
    return Settings(steps=1000, lr=0.01, schedule="constant", weight_decay=0.0, rp_fraction=1.0)


def transfer_defaults() -> Settings:
    return Settings(steps=1, lr=0.01, schedule="constant")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: PartName = Field(description="run name; a published extractor is NAMESPACE/NAME-extractor")
    namespace: PartName = Field(description="the namespace it publishes into (and workers claim by)")
    publish: bool = True


class AdaptSpec(_Spec):
    """Adapt ``extractor`` to the images of ``data`` through the frozen ``rp_head``.

    ``data``'s labels, if it has any, are never read while adapting. ``test`` (labelled
    target test data) is what the evaluations measure; by default ``data`` read from its
    test split without the index and size selections, as a task's test set is. The
    settings' ``steps``, ``lr``, ``batch_size``, ``optimizer`` and ``seed`` apply; each
    step rotates every image of the batch four ways (``rp_fraction`` keeps a share).
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
    settings: Settings = Field(default_factory=adapt_defaults)
    evaluate: bool = Field(default=True, description="measure the rows of Table 2 on the target test data")
    bn_modes: list[UdaRow] = Field(default_factory=lambda: list(UDA_ROWS), description="which rows to measure")

    @field_validator("settings", mode="before")
    @classmethod
    def _adapt_defaults(cls, v: Any) -> Any:
        # Settings given in part keep this kind's defaults for the rest, not training's.
        return {**adapt_defaults().model_dump(), **v} if isinstance(v, dict) else v


class TransferSpec(_Spec):
    """Recombine ``extractor`` with ``head``, fine-tune both on ``data`` (labelled, the
    head's task), and measure on ``test`` after each number of ``steps``. The run is as
    long as the largest of them (``settings.steps`` is not used); labels are matched to
    the head's outputs by class name, and images of classes the head lacks are left out."""

    kind: Literal["transfer"] = "transfer"
    extractor: ComponentRef = Field(description="ref of the source extractor")
    head: ComponentRef = Field(description="ref of the target task head")
    data: DataSpec = Field(description="the target task's training data (train split; labels by class name)")
    test: DataSpec | None = Field(default=None, description="the target task's test data")
    steps: list[int] = Field(
        default_factory=lambda: [0], min_length=1, max_length=64, description="measure after these many steps"
    )
    settings: Settings = Field(default_factory=transfer_defaults)
    bn_mode: Literal["batch", "running"] = Field(default="batch", description="BatchNorm when measuring")

    publish: bool = Field(default=False, description="publish the fine-tuned extractor and head")
    post: bool = Field(default=True, description="post each point as an evaluation (finetune_steps)")

    @field_validator("settings", mode="before")
    @classmethod
    def _transfer_defaults(cls, v: Any) -> Any:
        return {**transfer_defaults().model_dump(), **v} if isinstance(v, dict) else v

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        if any(s < 0 for s in v):
            raise ValueError("steps are counts of fine-tuning steps: 0 or more")
        if any(s > 1_000_000 for s in v):
            raise ValueError("at most 1,000,000 fine-tuning steps")
        return sorted(set(v))

    @model_validator(mode="after")
    def _publishable(self) -> TransferSpec:
        if self.publish and self.steps[-1] == 0:
            raise ValueError("publish: fine-tuned parts need at least one step (steps lists only 0)")
        return self
