"""The ``train`` kind: one or two networks, the compatibility methods and the scheme (paper §3)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from partsbin.parts.data.spec import DataSpec
from partsbin.parts.jobs.kinds import JobKind, register
from partsbin.parts.jobs.limits import JobCost, parameter_count
from partsbin.parts.jobs.spec import JobResult, JobSpec, percent
from partsbin.parts.names import InvalidName, validate_part
from partsbin.parts.spec_fields import ComponentRef, PartName

__all__ = ["TaskSpec", "ArchChoice", "TrainSpec", "TrainResult", "TaskScore", "PAIRS", "network_params"]

# Two-domain pairs available by name (docs/architecture.md, "Data"); partsbin.parts.data builds them.
PAIRS = ("fashion-mnist", "digits")
#: Classes assumed for a task whose spec does not list them, when counting parameters.
_CLASSES_IF_UNKNOWN = 100


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskSpec(_Model):
    name: str
    data: DataSpec | None = Field(default=None, description="the task's training data (read from the train split)")
    test: DataSpec | None = Field(default=None, description="its test data (default: 'data' from the test split)")
    pair: Literal["fashion-mnist", "digits"] | None = Field(default=None, description="a named two-domain pair ...")
    pair_task: Literal["a", "b"] | None = Field(default=None, description="... and which of its two tasks")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            return validate_part(v, "task name")
        except InvalidName as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _source(self) -> TaskSpec:
        if (self.pair is None) == (self.data is None):
            raise ValueError("give either 'pair' and 'pair_task', or 'data' (and 'test')")
        if self.pair is not None and self.pair_task is None:
            raise ValueError("'pair' needs 'pair_task': a or b")
        return self

    def class_count(self) -> int:
        if self.pair is not None:
            return 9
        assert self.data is not None
        return len(self.data.classes) if self.data.classes else _CLASSES_IF_UNKNOWN


class ArchChoice(_Model):
    name: str = "resnet_cifar"
    config: dict[str, Any] = Field(default_factory=lambda: {"depth": 20})
    split: str | None = None

    @model_validator(mode="after")
    def _known(self) -> ArchChoice:
        # The same schema (with bounds) the registry checks a card's arch against; imported
        # here, not at module level, so the spec's JSON Schema is printed without torch.
        from partsbin.parts.archs import ArchError, validate_config

        try:
            validate_config(self.name, self.config)
        except ArchError as exc:
            raise ValueError(str(exc)) from None
        return self


def network_params(arch: ArchChoice, classes: int, **extra: Any) -> int:
    """Parameters of one network of ``arch`` (3 input channels: the most a loader gives)."""
    return parameter_count(arch.name, {**arch.config, "in_chans": 3, "num_classes": classes, **extra}, arch.split)


class TrainSpec(JobSpec):
    """One training run: one or two networks, the compatibility methods and the scheme."""

    kind: Literal["train"] = "train"
    namespace: PartName = Field(default="local", description="the namespace it publishes into")
    arch: ArchChoice = Field(default_factory=ArchChoice)
    tasks: list[TaskSpec] = Field(min_length=1, max_length=8)
    methods: list[Literal["RP", "DCC", "IIW"]] = Field(default_factory=list, max_length=3)
    scheme: Literal["joint", "incremental", "independent", "upper-bound"] = "joint"
    dcc_labels: list[str] | None = Field(
        default=None, max_length=10_000, description="DCC's label set by name; default: the labels all tasks share"
    )
    anchors: list[ComponentRef] = Field(
        default_factory=list, max_length=8, description="incremental: refs of frozen aux heads to train against"
    )
    init: ComponentRef | None = Field(default=None, description="IIW from a registered component of role 'init' (ref)")

    @model_validator(mode="after")
    def _consistent(self) -> TrainSpec:
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError("task names must be unique")
        if self.scheme in ("independent", "upper-bound") and set(self.methods) & {"RP", "DCC"}:
            raise ValueError(f"scheme {self.scheme!r} trains no shared aux head: leave RP and DCC out of 'methods'")
        if self.anchors and self.scheme != "incremental":
            raise ValueError("'anchors' (frozen aux heads) belong to the incremental scheme")
        if self.settings.alternate_every != 1 and self.scheme != "joint":
            raise ValueError(
                "settings.alternate_every belongs to the joint scheme (the others train one network at a time)"
            )
        if "DCC" in self.methods and len(self.tasks) == 1 and self.dcc_labels is None and not self.anchors:
            # With one task the default ("the labels all tasks share") is every class of
            # that task, which later tasks will not share: the DCC head would be wrong.
            raise ValueError(
                "DCC in a one-task run needs 'dcc_labels': the classes common to the tasks that will use this DCC "
                "head, which one task cannot know (or train against an existing DCC head with 'anchors')"
            )
        return self

    def cost(self) -> JobCost:
        cost = JobCost.of(self)
        cost.steps = self.settings.steps * len(self.tasks)
        params = sum(network_params(self.arch, t.class_count()) for t in self.tasks)
        # Aux heads have the task head's architecture: counted as whole networks (an upper bound).
        aux = int("RP" in self.methods) + int("DCC" in self.methods) + int(self.scheme == "upper-bound")
        params += aux * len(self.tasks) * network_params(self.arch, 4)
        cost.params = params
        return cost


class TaskScore(BaseModel):
    model_config = ConfigDict(extra="forbid")

    own_task_accuracy: float
    test_images: int
    bn: str


class TrainResult(JobResult):
    kind: Literal["train"] = "train"
    tasks: dict[str, TaskScore] = Field(default_factory=dict)
    note: str | None = Field(default=None, description="e.g. a node of a multi-node run that does not publish")
    #: The trained networks, in the process that ran the job (never serialised).
    _trained: list[Any] = PrivateAttr(default_factory=list)

    @property
    def trained(self) -> list[Any]:
        return self._trained

    def figures(self) -> list[str]:
        lines = [
            f"task {name}: own-task accuracy {percent(t.own_task_accuracy)} on {t.test_images:,} test images"
            for name, t in self.tasks.items()
        ]
        return lines + ([self.note] if self.note else [])


register(
    JobKind(
        name="train",
        spec=TrainSpec,
        result=TrainResult,
        runner="partsbin.trainer.run:run",
        summary="train one or more networks with RP, DCC and IIW (joint or incremental) and publish their parts",
        example={
            "name": "fmnist",
            "namespace": "lab",
            "arch": {"name": "resnet_cifar", "config": {"depth": 20, "width": 16}},
            "tasks": [
                {"name": "a", "pair": "fashion-mnist", "pair_task": "a"},
                {"name": "b", "pair": "fashion-mnist", "pair_task": "b"},
            ],
            "methods": ["IIW", "RP", "DCC"],
            "settings": {"steps": 2000},
        },
    )
)
