"""One head shared by many architectures (paper §5.2): the ``train-multiarch`` and
``update-head`` kinds.

- ``train-multiarch``: several networks of *different* architectures for one task, each
  extractor ending in a 1×1 junction projection to ``junction_channels``, trained jointly
  with ONE shared DCC head (by default the MobileNetV2 head, split after inverted-residual
  block 11). The DCC head is also the task head; it is published as the group's anchor.
- ``update-head``: extend a published head to new classes, fine-tuned on the features of
  one frozen reference extractor, and publish it as a new version of the same head.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from partsbin.parts.data.spec import DataSpec
from partsbin.parts.jobs.kinds import JobKind, Option, register
from partsbin.parts.jobs.limits import JobCost
from partsbin.parts.jobs.settings import OPTIMISER_FIELDS, SETTINGS_FIELDS
from partsbin.parts.jobs.spec import JobResult, JobSpec, percent
from partsbin.parts.jobs.train import ArchChoice, TaskSpec, network_params
from partsbin.parts.names import parse_ref
from partsbin.parts.spec_fields import ComponentRef, PartName

__all__ = [
    "NetworkChoice",
    "MultiArchSpec",
    "MultiArchResult",
    "UpdateHeadSpec",
    "UpdateHeadResult",
    "DEFAULT_SHARED_HEAD",
]

# §5.2: "the head architecture of MobileNetV2, split after the 11th inverted-residual block".
DEFAULT_SHARED_HEAD = {"name": "mobilenetv2_cifar", "config": {}, "split": "block11"}


class NetworkChoice(BaseModel):
    """One network of the run: a label (it names the published extractor) and its architecture."""

    model_config = ConfigDict(extra="forbid")

    name: PartName = Field(description="label of this network; publishes NAMESPACE/RUN-NAME-extractor")
    arch: ArchChoice


class MultiArchSpec(JobSpec):
    """Several architectures, one task, one shared DCC head (which is also the task head)."""

    kind: Literal["train-multiarch"] = "train-multiarch"
    namespace: PartName = Field(default="local", description="the namespace it publishes into")
    task: TaskSpec
    networks: list[NetworkChoice] = Field(min_length=1, max_length=8)
    junction_channels: int = Field(
        default=64, ge=1, le=8192, description="channels of every extractor's 1x1 junction projection (paper: 64)"
    )
    head: ArchChoice = Field(
        default_factory=lambda: ArchChoice.model_validate(DEFAULT_SHARED_HEAD),
        description="architecture of the shared head (its head part after 'split')",
    )

    # The shared head learns at the networks' rate after each network's step; the train
    # kind's joint-scheme knobs and RP are not part of this method.
    settings_used = SETTINGS_FIELDS - {"rp_fraction", "aux_lr_scale", "alternate_every", "distributed"}

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
        return self

    def cost(self) -> JobCost:
        cost = JobCost.of(self)
        cost.steps = self.settings.steps * len(self.networks)
        classes, j = self.task.class_count(), self.junction_channels
        cost.params = sum(network_params(n.arch, classes, junction_channels=j) for n in self.networks)
        cost.params += network_params(self.head, classes, junction_channels=j)
        return cost


class NetworkScore(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arch: str
    own_task_accuracy: float
    test_images: int


class MultiArchResult(JobResult):
    kind: Literal["train-multiarch"] = "train-multiarch"
    networks: dict[str, NetworkScore] = Field(default_factory=dict)

    def figures(self) -> list[str]:
        return [
            f"{name} ({n.arch}) + shared head: {percent(n.own_task_accuracy)} on {n.test_images:,} test images"
            for name, n in self.networks.items()
        ]


class UpdateHeadSpec(JobSpec):
    """Extend ``head`` to ``classes``, fine-tuned on ``data`` seen through the frozen
    ``reference_extractor``; published as the next version of the head's name."""

    kind: Literal["update-head"] = "update-head"
    head: ComponentRef = Field(description="ref of the head to update (a task head or a DCC head)")
    reference_extractor: ComponentRef = Field(
        description="ref of the extractor whose features the head is fine-tuned on"
    )
    data: DataSpec = Field(description="training data of the updated task (classes default to 'classes')")
    test: DataSpec | None = Field(default=None, description="test data (default: the test split of 'data')")
    classes: list[str] = Field(
        min_length=1,
        max_length=10_000,
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

    settings_used = OPTIMISER_FIELDS | {
        "device",
        "threads",
        "bn_eval",
        "eval_batch_size",
        "test_limit",
        "max_seconds",
    }
    settings_defaults = {"steps": 300, "lr": 0.01, "schedule": "cosine"}
    named_after = ("head", "-update")

    @field_validator("classes")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("classes must be unique")
        return v

    @model_validator(mode="after")
    def _namespace(self) -> UpdateHeadSpec:
        ref = parse_ref(self.head)
        if ref.kind != "digest" and ref.namespace != self.namespace:
            raise ValueError(
                f"the new version of {ref.full_name} is published under its name, in namespace {ref.namespace!r}, "
                f"not {self.namespace!r}"
            )
        return self


class UpdateHeadResult(JobResult):
    kind: Literal["update-head"] = "update-head"
    head: str
    reference_extractor: str
    classes_before: int
    classes_after: int
    accuracy: float
    test_images: int
    old_classes_accuracy_before: float
    old_classes_accuracy_after: float
    old_classes_test_images: int

    def figures(self) -> list[str]:
        return [
            f"{self.head} extended from {self.classes_before} to {self.classes_after} classes on "
            f"{self.reference_extractor}'s features",
            f"with {self.reference_extractor}: {percent(self.accuracy)} on {self.test_images:,} test images of all "
            f"classes; old classes {percent(self.old_classes_accuracy_before)} before (over the old classes' logits) "
            f"-> {percent(self.old_classes_accuracy_after)} after (over all classes' logits)",
        ]


register(
    JobKind(
        name="train-multiarch",
        spec=MultiArchSpec,
        result=MultiArchResult,
        runner="partsbin.trainer.multiarch:run_multiarch",
        summary="train extractors of several architectures jointly with one shared DCC head (paper §5.2)",
        example={
            "name": "devices",
            "namespace": "lab",
            "task": {
                "name": "fm5",
                "data": {"source": "fashion-mnist", "classes": ["t-shirt", "trouser", "pullover", "dress", "coat"]},
            },
            "networks": [
                {"name": "server", "arch": {"name": "wide_resnet", "config": {"depth": 16, "widen": 4}}},
                {"name": "phone", "arch": {"name": "mobilenetv2_cifar", "config": {"width_mult": 1.0}}},
            ],
            "settings": {"steps": 2000},
        },
    )
)

register(
    JobKind(
        name="update-head",
        spec=UpdateHeadSpec,
        result=UpdateHeadResult,
        runner="partsbin.trainer.update_head:run_update_head",
        summary="extend a head to new classes on one frozen extractor; publish it as the head's next version",
        example={
            "head": "lab/devices-shared-head@1",
            "reference_extractor": "lab/devices-server-extractor@1",
            "data": {"source": "fashion-mnist"},
            "classes": ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal"],
        },
        verb="update-head",
        options=(
            Option(("--head",), "head", "ref of the head to extend (a shared DCC head or a task head)", required=True),
            Option(
                ("--reference-extractor",),
                "reference_extractor",
                "ref of the frozen extractor the head is fine-tuned on",
                required=True,
            ),
            Option(
                ("--data",),
                "data",
                "training data: a source name (fashion-mnist), a JSON object or a JSON/YAML file",
                required=True,
                parse="data",
                metavar="DATASPEC",
            ),
            Option(
                ("--classes",),
                "classes",
                "every class of the updated head, comma-separated (old ones included)",
                required=True,
                parse="list",
            ),
            Option(
                ("--test",), "test", "test data [default: the test split of --data]", parse="data", metavar="DATASPEC"
            ),
            Option(("--test-limit",), "settings.test_limit", "evaluate on the first N test images", type=int),
            Option(("--steps",), "settings.steps", "fine-tuning steps [default: 300]", type=int),
            Option(("--lr",), "settings.lr", "learning rate [default: 0.01]", type=float),
            Option(("--batch-size",), "settings.batch_size", "images per step [default: 64]", type=int),
            Option(("--seed",), "settings.seed", "seed of the new classifier rows and the batches", type=int),
            Option(
                ("--reference-bn",),
                "reference_bn",
                "BatchNorm of the frozen reference extractor: batch (the batch's statistics) or running",
            ),
            Option(("--train-layers",), "train_layers", "all (the paper) or classifier (only the extended layer)"),
            Option(("--threads",), "settings.threads", "torch CPU threads", type=int),
        ),
    )
)
