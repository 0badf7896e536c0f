"""Training networks to produce compatible components (paper §3).

Read top to bottom: build the networks (:func:`build_networks`, IIW), build or pull the
aux heads (:func:`build_aux_heads`), the losses (:func:`task_loss`, :func:`rp_loss`,
:func:`dcc_loss`), then :func:`train` runs one of the schemes:

- ``joint``: alternate minibatches of the tasks; the shared aux heads are learnt by all;
- ``incremental``: the aux heads are frozen (pulled from the registry, or learnt with
  the first task and then frozen) and each network trains against them alone;
- ``independent``: task loss only (the baseline);
- ``upper-bound``: each network on its own task restricted to the common classes, with
  its own unshared RP head (the paper's fair upper bound).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from partsbin.parts.archs import SplitNetwork, build
from partsbin.parts.batchnorm import use_batch_statistics
from partsbin.parts.data import StreamedImages, TaskData
from partsbin.parts.jobs.settings import Settings
from partsbin.parts.jobs.train import TrainSpec
from partsbin.parts.metrics import shared_classes
from partsbin.trainer.loop import (
    EpochBatches,
    Progress,
    Track,
    augmenting,
    fit,
    lr_schedule,
    make_optimizer,
    rank_and_world,
)
from partsbin.trainer.rotation import ROTATION_LABELS, rotate_batch

if TYPE_CHECKING:
    from partsbin.parts.data.stream import StreamBatches

__all__ = [
    "Network",
    "AuxHeads",
    "build_networks",
    "build_aux_heads",
    "freeze",
    "train",
    "dcc_label_set",
    "task_loss",
    "rp_loss",
    "dcc_loss",
]


@dataclass
class Network:
    task: TaskData
    model: SplitNetwork
    seed: int
    arch: str
    config: dict[str, Any]
    split: str | None
    init_state: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def extractor(self) -> nn.Sequential:
        return self.model.extractor()

    @property
    def head(self) -> nn.Sequential:
        return self.model.head()


@dataclass
class AuxHeads:
    rp: nn.Module | None = None
    dcc: nn.Module | None = None
    dcc_labels: list[str] = field(default_factory=list)
    frozen: bool = False
    # Digests of registry components these heads were pulled from (incremental scheme).
    anchors: dict[str, str] = field(default_factory=dict)

    def modules(self) -> list[nn.Module]:
        return [m for m in (self.rp, self.dcc) if m is not None]


def _arch_config(spec: TrainSpec, num_classes: int, in_chans: int) -> dict[str, Any]:
    return {**spec.arch.config, "in_chans": in_chans, "num_classes": num_classes}


def build_networks(
    spec: TrainSpec, tasks: list[TaskData], init_state: dict[str, torch.Tensor] | None = None
) -> list[Network]:
    """One network per task. IIW: every network starts from the same weights — a shared
    seed, or ``init_state`` (a registered ``init`` component). Otherwise each network
    gets its own seed, as independently trained networks would."""
    iiw = "IIW" in spec.methods
    nets = []
    for i, task in enumerate(tasks):
        seed = spec.settings.seed if iiw else spec.settings.seed + 1000 * (i + 1)
        torch.manual_seed(seed)
        cfg = _arch_config(spec, len(task.classes), task.train.channels)
        model = build(spec.arch.name, split=spec.arch.split, **cfg)
        if init_state is not None:
            _load_matching(model, init_state)
        nets.append(
            Network(
                task,
                model,
                seed,
                spec.arch.name,
                cfg,
                model.split,
                {k: v.clone() for k, v in model.state_dict().items()},
            )
        )
    return nets


def _load_matching(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load the init weights; a classifier of another size keeps its own seeded init."""
    own = model.state_dict()
    missing = set(own) - set(state)
    if missing:
        raise ValueError(f"the init component does not fit this architecture: missing {sorted(missing)[:3]}")
    model.load_state_dict({k: (state[k] if state[k].shape == v.shape else v) for k, v in own.items()}, strict=True)


def dcc_label_set(spec: TrainSpec, tasks: list[TaskData]) -> list[str]:
    if spec.dcc_labels is not None:
        return list(spec.dcc_labels)
    labels = tasks[0].classes
    for t in tasks[1:]:
        labels = shared_classes(labels, t.classes)
    return labels


def build_aux_heads(spec: TrainSpec, tasks: list[TaskData], dcc_labels: list[str]) -> AuxHeads:
    """Aux heads have the architecture of the task head at the same split (§3)."""
    in_chans = tasks[0].train.channels
    aux = AuxHeads(dcc_labels=dcc_labels)
    torch.manual_seed(spec.settings.seed + 7)
    if "RP" in spec.methods:
        aux.rp = build(
            spec.arch.name, split=spec.arch.split, **_arch_config(spec, len(ROTATION_LABELS), in_chans)
        ).head()
    if "DCC" in spec.methods:
        if not dcc_labels:
            raise ValueError("DCC needs classes common to the tasks; they share none (set dcc_labels?)")
        aux.dcc = build(spec.arch.name, split=spec.arch.split, **_arch_config(spec, len(dcc_labels), in_chans)).head()
    return aux


def freeze(aux: AuxHeads) -> AuxHeads:
    """Frozen as docs/architecture.md defines it: no gradient, no optimiser state, BatchNorm with the
    batch's statistics (the regime it was trained in) and running buffers untouched."""
    for m in aux.modules():
        m.requires_grad_(False)
        for p in m.parameters():
            p.grad = None  # left over from learning them with the first network
        use_batch_statistics(m)
    aux.frozen = True
    return aux


# -- losses ----------------------------------------------------------------------------------
def task_loss(head: nn.Module, feats: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(feats), y)


def rp_loss(extractor: nn.Module, rp_head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Eq. 1's aux term: the mean over the four rotations of each image."""
    rotated, labels = rotate_batch(x)
    return F.cross_entropy(rp_head(extractor(rotated)), labels)


def dcc_loss(dcc_head: nn.Module, feats: torch.Tensor, y: torch.Tensor, to_dcc: torch.Tensor) -> torch.Tensor:
    """Eq. 2's aux term: cross-entropy on the examples of common classes only, summed and
    divided by the batch size, so its weight follows how many common examples the batch has."""
    target = to_dcc[y]
    mask = target >= 0
    if not bool(mask.any()):
        return feats.sum() * 0.0
    return F.cross_entropy(dcc_head(feats[mask]), target[mask], reduction="sum") / y.shape[0]


# -- the loop ----------------------------------------------------------------------------------
class _StepLoss(nn.Module):
    """The whole loss of one step of network ``i``: its task loss, plus RP through the
    (shared, or in the upper bound its own) RP head and DCC through the shared DCC head.

    ``common`` holds the batch's positions of common-class examples, found on the host
    before the batch moved (so DCC's selection costs the device no sync)."""

    def __init__(self, nets: list[Network], aux: AuxHeads, own_heads: list[nn.Module | None], rp_n: int) -> None:
        super().__init__()
        self.models = nn.ModuleList(n.model for n in nets)
        self.own_rp = nn.ModuleList(h if h is not None else nn.Identity() for h in own_heads)
        self.has_own_rp = [h is not None for h in own_heads]
        self.rp = aux.rp
        self.dcc = aux.dcc
        self.rp_n = rp_n

    def forward(
        self, i: int, x: torch.Tensor, y: torch.Tensor, common: torch.Tensor, dcc_y: torch.Tensor
    ) -> torch.Tensor:
        model = cast(SplitNetwork, self.models[i])
        extractor, head = model.extractor(), model.head()
        feats = extractor(x)
        loss = task_loss(head, feats, y)
        rp_head = self.own_rp[i] if self.has_own_rp[i] else self.rp
        if rp_head is not None:
            loss = loss + rp_loss(extractor, rp_head, x[: self.rp_n])
        if self.dcc is not None:
            loss = loss + dcc_loss_at(self.dcc, feats, common, dcc_y, y.shape[0])
        return loss


def dcc_loss_at(
    dcc_head: nn.Module, feats: torch.Tensor, common: torch.Tensor, target: torch.Tensor, batch: int
) -> torch.Tensor:
    """:func:`dcc_loss` with the common-class positions and their DCC labels given."""
    if common.numel() == 0:
        return feats.sum() * 0.0
    return F.cross_entropy(dcc_head(feats[common]), target, reduction="sum") / batch


def _common_positions(to_dcc: torch.Tensor) -> Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]:
    def after(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x, y = batch
        target = to_dcc[y]
        common = torch.nonzero(target >= 0).flatten()
        return x, y, common, target[common]

    return after


def train(
    nets: list[Network],
    aux: AuxHeads,
    settings: Settings,
    *,
    joint: bool,
    device: torch.device,
    progress: Progress | None = None,
    own_rp: bool = False,
    incremental: bool = False,
) -> dict[str, Any]:
    """Train ``nets`` with the aux heads. ``joint`` alternates minibatches of all networks
    (one optimiser step each in turn); otherwise each network trains alone, in order.
    ``own_rp`` gives each network an unshared RP head (the upper bound). ``incremental``:
    aux heads not frozen yet learn with the first network only, and are frozen before the
    second starts."""
    for net in nets:
        net.model.train()
    for m in aux.modules():
        m.train()
    own_heads: list[nn.Module | None] = [None] * len(nets)
    if own_rp:
        for i, net in enumerate(nets):
            torch.manual_seed(net.seed + 11)
            # Same architecture as the task head, but one per network: it regularises
            # like RP does without linking the networks (the paper's fair upper bound).
            own_heads[i] = (
                build(net.arch, split=net.split, **{**net.config, "num_classes": len(ROTATION_LABELS)}).head().train()
            )
    _, world = rank_and_world()
    rp_n = max(1, round(settings.batch_size // world * settings.rp_fraction))
    uses_rp = aux.rp is not None or own_rp
    aux_params = [p for m in aux.modules() for p in m.parameters() if p.requires_grad]
    aux_opt = make_optimizer(aux_params, settings) if aux_params and not aux.frozen else None
    tracks = []
    streams: list[StreamBatches] = []
    for i, (net, own) in enumerate(zip(nets, own_heads, strict=True)):
        params = list(net.model.parameters()) + (list(own.parameters()) if own is not None else [])
        opts = [(make_optimizer(params, settings), 1.0)]
        if aux_opt is not None and not (incremental and i > 0):
            opts.append((aux_opt, settings.aux_lr_scale))
        to_dcc = torch.tensor([aux.dcc_labels.index(c) if c in aux.dcc_labels else -1 for c in net.task.classes])
        gen = torch.Generator().manual_seed(net.seed + 2)
        data = net.task.train
        # Every rank draws the same global batches (same seeds) and trains on its own
        # slice of each: the union over ranks is exactly the one-process batch.
        batches: Iterator[tuple[torch.Tensor, ...]]
        if isinstance(data, StreamedImages):
            # Decoded by the DataLoader's workers while the steps run.
            stream = data.training_batches(settings.batch_size, seed=net.seed + 1, pin=device.type == "cuda")
            streams.append(stream)
            batches = stream
        else:
            batches = EpochBatches(data.x, data.y, batch_size=settings.batch_size, seed=net.seed + 1)
        tracks.append(
            Track(
                name=net.task.name,
                batches=batches,
                optimizers=opts,
                steps=settings.steps,
                lr=lr_schedule(settings),
                images_per_step=settings.batch_size + (4 * rp_n * world if uses_rp else 0),
                before=augmenting(gen) if settings.augment else None,
                after=_common_positions(to_dcc),
            )
        )
    losses = _StepLoss(nets, aux, own_heads, rp_n)

    def freeze_after_first(i: int, k: int) -> None:
        if i == 1 and k == 0 and not aux.frozen:
            freeze(aux)

    try:
        stats = fit(
            losses,
            tracks,
            device=device,
            progress=progress,
            alternate_every=settings.alternate_every if joint else None,
            at_step=freeze_after_first if incremental else None,
        )
    finally:
        for stream in streams:
            stream.close()
    if incremental and not aux.frozen:
        freeze(aux)
    return {**stats.as_dict(), "history": stats.history}
