"""Job specs for one head shared by many architectures (paper §5.2).

- ``train-multiarch``: several networks of *different* architectures for one task, each
  extractor ending in a 1×1 junction projection to ``junction_channels``, trained jointly
  with ONE shared DCC head (by default the MobileNetV2 head, split after inverted-residual
  block 11). The DCC head is also the task head; it is published as the group's anchor.
- ``update-head``: extend a published head to new classes, fine-tuned on the features of
  one frozen reference extractor, and publish it as a new version of the same head.

They live in the shared core so that the registry validates them at submission.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from partsbin.parts.names import parse_ref
from partsbin.parts.spec_fields import ComponentRef, PartName
from partsbin.parts.training_spec import ArchChoice, DataSpec, Settings, TaskSpec

__all__ = ["NetworkChoice", "MultiArchSpec", "UpdateHeadSpec", "DEFAULT_SHARED_HEAD"]

# §5.2: "the head architecture of MobileNetV2, split after the 11th inverted-residual block".
DEFAULT_SHARED_HEAD = {"name": "mobilenetv2_cifar", "config": {}, "split": "block11"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NetworkChoice(_Model):
    """One network of the run: a label (it names the published extractor) and its architecture."""

    name: PartName = Field(description="label of this network; publishes NAMESPACE/RUN-NAME-extractor")
    arch: ArchChoice


class MultiArchSpec(_Model):
    """Several architectures, one task, one shared DCC head (which is also the task head)."""

    kind: Literal["train-multiarch"] = "train-multiarch"
    name: PartName = Field(description="run name")
    namespace: PartName = "local"
    task: TaskSpec
    networks: list[NetworkChoice] = Field(min_length=1, max_length=8)
    junction_channels: int = Field(
        default=64, ge=1, le=8192, description="channels of every extractor's 1x1 junction projection (paper: 64)"
    )
    head: ArchChoice = Field(
        default_factory=lambda: ArchChoice.model_validate(DEFAULT_SHARED_HEAD),
        description="architecture of the shared head (its head part after 'split')",
    )
    settings: Settings = Field(default_factory=Settings)
    publish: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> MultiArchSpec:
        labels = [n.name for n in self.networks]
        if len(set(labels)) != len(labels):
            raise ValueError("network names must be unique")
        for where, arch in [(f"networks[{n.name}]", n.arch) for n in self.networks] + [("head", self.head)]:
            given = arch.config.get("junction_channels")
            if given is not None and given != self.junction_channels:
                raise ValueError(
                    f"{where}.arch.config.junction_channels is {given} but the run's junction_channels is "
                    f"{self.junction_channels}: every extractor meets the shared head at the same channel count "
                    "(leave it out of the arch config)"
                )
        # The shared head learns at the networks' rate after each network's step; these
        # knobs of the train kind's joint scheme are not implemented here.
        for knob in ("aux_lr_scale", "alternate_every"):
            if getattr(self.settings, knob) != 1:
                raise ValueError(f"settings.{knob} is not used by train-multiarch: leave it out")
        return self


class UpdateHeadSpec(_Model):
    """Extend ``head`` to ``classes``, fine-tuned on ``data`` seen through the frozen
    ``reference_extractor``; published as the next version of the head's name."""

    kind: Literal["update-head"] = "update-head"
    name: PartName = Field(default="update-head", description="a label for the job")
    namespace: PartName | None = Field(
        default=None, description="where the new version is published: the head's namespace (default: from its ref)"
    )
    head: ComponentRef = Field(description="ref of the head to update (a task head or a DCC head)")
    reference_extractor: ComponentRef = Field(
        description="ref of the extractor whose features the head is fine-tuned on"
    )
    data: DataSpec = Field(description="training data of the updated task (classes default to 'classes')")
    test: DataSpec | None = Field(default=None, description="test data (default: the test split of 'data')")
    test_limit: int | None = Field(default=None, ge=1, description="evaluate on the first N test images")
    classes: list[str] = Field(
        min_length=1,
        description="the classes of the updated head; every class of the old head must be among them "
        "(outputs: the old classes in their order, then the new ones in the order given)",
    )
    reference_bn: Literal["batch", "running"] = Field(
        default="batch",
        description="BatchNorm of the frozen reference extractor: 'batch' (the batch's statistics, the regime the "
        "head was trained in and the benchmark's default; running buffers untouched) or 'running' (its stored ones)",
    )
    train_layers: Literal["all", "classifier"] = Field(
        default="all",
        description="'all' of the head is fine-tuned (the paper), or only its 'classifier' (the extended layer): "
        "the rest stays as every extractor was trained against it",
    )
    settings: Settings = Field(
        default_factory=lambda: Settings(steps=300, lr=0.01, schedule="cosine"),
        description="optimiser settings of the fine-tuning (steps, lr, batch size...)",
    )
    publish: bool = True

    @field_validator("classes")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("classes must be unique")
        return v

    @model_validator(mode="after")
    def _namespace(self) -> UpdateHeadSpec:
        ref = parse_ref(self.head)
        if self.namespace is None:
            if ref.kind == "digest":
                raise ValueError("give 'namespace' (the head's): a digest ref does not say where the new version goes")
            self.namespace = ref.namespace  # checked by parse_ref; a namespace given is checked as a field
        if ref.kind != "digest" and ref.namespace != self.namespace:
            raise ValueError(
                f"the new version of {ref.full_name} is published under its name, in namespace {ref.namespace!r}, "
                f"not {self.namespace!r}"
            )
        return self
