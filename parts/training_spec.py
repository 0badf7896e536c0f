"""The training job spec (YAML or JSON), validated at the edge.

It lives in the shared core so that the registry validates a job at submission —
naming the bad field — without importing the trainer. ``partsbin train --schema``
prints its JSON Schema.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from partsbin.parts.names import InvalidName, parse_ref, validate_part
from partsbin.parts.spec_fields import ComponentRef, PartName

__all__ = ["Transform", "DataSpec", "TaskSpec", "ArchChoice", "Settings", "Distributed", "TrainSpec", "PAIRS"]

# Two-domain pairs available by name (docs/architecture.md, "Data"); partsbin.parts.data builds them.
PAIRS = ("fashion-mnist", "digits")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Transform(_Model):
    """One step of a domain shift or input preparation, applied in order.

    Shifts are declared here rather than baked into a file, so that a card's provenance
    says exactly what the domain was: ``resize`` (down, and optionally back up),
    ``invert``, ``contrast`` (scale each image about its mean), ``brightness`` (add a
    constant), ``noise`` (additive Gaussian, seeded), ``blur`` (Gaussian), and the input
    preparations ``grey_to_rgb`` and ``normalize``. Images stay in [0, 1] after every
    shift (clamped), as the loaders deliver them.
    """

    op: Literal["resize", "invert", "contrast", "brightness", "noise", "blur", "grey_to_rgb", "normalize"]
    size: int | None = Field(default=None, ge=1, le=4096, description="resize: size to resample to")
    back_to: int | None = Field(
        default=None, ge=1, le=4096, description="resize: then resample back to this size (28→14→28)"
    )
    factor: float | None = Field(default=None, gt=0, le=100, description="contrast: 0.5 halves it, 2 doubles it")
    delta: float | None = Field(default=None, ge=-1, le=1, description="brightness: added to every pixel")
    sigma: float | None = Field(
        default=None, gt=0, le=100, description="noise: its standard deviation; blur: the kernel's, in pixels"
    )
    seed: int = Field(default=0, description="noise: the seed of the noise generator")
    mean: list[float] | None = None
    std: list[float] | None = None

    @model_validator(mode="after")
    def _args(self) -> Transform:
        needs = {"resize": "size", "contrast": "factor", "brightness": "delta", "noise": "sigma", "blur": "sigma"}
        field = needs.get(self.op)
        if field is not None and getattr(self, field) is None:
            raise ValueError(f"{self.op} needs '{field}'")
        if self.op == "normalize" and (self.mean is None or self.std is None):
            raise ValueError("normalize needs 'mean' and 'std'")
        return self


class DataSpec(_Model):
    """Where a task's images come from and what is done to them."""

    source: Literal["digits", "fashion-mnist", "cifar10", "cifar100", "stl10", "folder", "npz"]
    path: str | None = Field(default=None, description="file or folder; default: the source's standard location")
    classes: list[str] | None = Field(
        default=None, description="class subset by label name, in this order (labels are remapped)"
    )
    indices: Literal["even", "odd"] | None = Field(default=None, description="keep even- or odd-indexed examples")
    transforms: list[Transform] = Field(default_factory=list)
    limit: int | None = Field(default=None, ge=1, description="keep the first N examples (after the selections)")


class TaskSpec(_Model):
    name: str
    train: DataSpec | None = None
    test: DataSpec | None = None
    pair: Literal["fashion-mnist", "digits"] | None = Field(default=None, description="a named two-domain pair ...")
    pair_task: Literal["a", "b"] | None = Field(default=None, description="... and which of its two tasks")
    test_limit: int | None = Field(default=None, ge=1, description="evaluate on a fixed subset of the test split")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        try:
            return validate_part(v, "task name")
        except InvalidName as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _source(self) -> TaskSpec:
        if (self.pair is None) == (self.train is None):
            raise ValueError("give either 'pair' and 'pair_task', or 'train' (and 'test') data")
        if self.pair is not None and self.pair_task is None:
            raise ValueError("'pair' needs 'pair_task': a or b")
        return self


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


class Distributed(_Model):
    """Data-parallel training over ``nproc_per_node`` × ``nnodes`` processes, launched by
    PyTorch's own launcher (``torch.distributed.run``) with DistributedDataParallel: gloo
    on CPU, NCCL on GPUs. The global batch stays ``settings.batch_size``, split evenly
    over the processes, so a run's optimisation matches one process's."""

    nproc_per_node: int = Field(default=2, ge=1, le=256, description="processes on this machine")
    nnodes: int = Field(default=1, ge=1, le=1024, description="machines taking part")
    rdzv_endpoint: str | None = Field(
        default=None,
        description="HOST:PORT of the c10d rendezvous every node reaches (needed with nnodes > 1)",
        max_length=300,
    )
    rdzv_id: str = Field(
        default="partsbin", max_length=100, description="rendezvous id, the same on every node of one run"
    )

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @model_validator(mode="after")
    def _endpoint(self) -> Distributed:
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError(
                "nnodes > 1 needs rdzv_endpoint (HOST:PORT of a rendezvous every node reaches; see docs/distributed.md)"
            )
        return self


class Settings(_Model):
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(default=0.05, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=5e-4, ge=0)
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    steps: int = Field(default=1000, ge=1, description="optimiser steps per network (joint: per task)")
    batch_size: int = Field(default=64, ge=2)
    # The paper rotates every image (Eq. 1). A quarter is an unbiased estimate of the same
    # term at 2.5x less cost per step; on two pairs it gave compatibility within the seeds'
    # spread on one and far more on the other (bench/results/rp_conditions.md, 1,000 steps:
    # 34.2% / 40.1% against 37.7% / 24.6% with every image rotated).
    rp_fraction: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="fraction of each batch rotated for RP: an unbiased estimate of the RP term at a fraction of its cost",
    )
    augment: bool = Field(default=False, description="random crop with padding and horizontal flip")
    aux_lr_scale: float = Field(
        default=1.0,
        gt=0,
        le=100,
        description="the shared aux heads learn at this multiple of the networks' learning rate (the paper: 1)",
    )
    alternate_every: int = Field(
        default=1,
        ge=1,
        le=1_000_000,
        description="joint scheme: steps of one network before the next takes over (the paper alternates minibatches: 1)",
    )
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(
        default=None, ge=1, le=1024, description="torch CPU threads; default: the CPUs available to the process"
    )
    bn_eval: Literal["batch", "running"] = Field(
        default="batch", description="BatchNorm at evaluation (the paper uses batch)"
    )
    eval_batch_size: int = Field(default=256, ge=2)
    distributed: Distributed | None = Field(
        default=None, description="data-parallel training over several processes (torch.distributed)"
    )

    @model_validator(mode="after")
    def _batch_splits(self) -> Settings:
        if self.distributed is not None and self.batch_size % self.distributed.world_size:
            raise ValueError(
                f"batch_size {self.batch_size} does not split evenly over {self.distributed.world_size} processes "
                "(nproc_per_node × nnodes): choose a multiple"
            )
        return self


class TrainSpec(_Model):
    """One training run: one or two networks, the compatibility methods and the scheme."""

    kind: Literal["train"] = "train"
    name: PartName = Field(description="run name; published components are NAMESPACE/NAME-TASK-extractor, ...")
    namespace: PartName = "local"
    arch: ArchChoice = Field(default_factory=ArchChoice)
    tasks: list[TaskSpec] = Field(min_length=1, max_length=8)
    methods: list[Literal["RP", "DCC", "IIW"]] = Field(default_factory=list)
    scheme: Literal["joint", "incremental", "independent", "upper-bound"] = "joint"
    dcc_labels: list[str] | None = Field(
        default=None, description="DCC's label set by name; default: the labels all tasks share"
    )
    anchors: list[ComponentRef] = Field(
        default_factory=list, description="incremental: refs of frozen aux heads to train against"
    )
    init: str | None = Field(default=None, description="IIW from a registered component of role 'init' (ref)")
    settings: Settings = Field(default_factory=Settings)
    publish: bool = True

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
        if self.init is not None:
            try:
                parse_ref(self.init)
            except InvalidName as exc:
                raise ValueError(f"init: {exc}") from None
        return self
