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

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from partsbin.parts.archs import SplitNetwork, build
from partsbin.parts.batchnorm import use_batch_statistics
from partsbin.parts.data import Images, TaskData, augment_batch
from partsbin.parts.metrics import shared_classes
from partsbin.parts.training_spec import Settings, TrainSpec
from partsbin.trainer.rotation import ROTATION_LABELS, rotate_batch

__all__ = [
    "Network",
    "AuxHeads",
    "StopRequested",
    "Progress",
    "resolve_device",
    "build_networks",
    "build_aux_heads",
    "joint_schedule",
    "freeze",
    "train",
    "dcc_label_set",
]


class StopRequested(Exception):
    """Raised from the training loop when the progress callback asks to stop."""


@dataclass
class Progress:
    """What the loop reports: called every ``every`` steps and at the end."""

    on_step: Callable[[dict[str, Any]], None] = lambda info: None
    should_stop: Callable[[], bool] = lambda: False
    every: int = 20


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


def resolve_device(settings: Settings) -> torch.device:
    if settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("settings.device is 'cuda' but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


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
        cfg = _arch_config(spec, len(task.classes), int(task.train.x.shape[1]))
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
    in_chans = int(tasks[0].train.x.shape[1])
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


def joint_schedule(networks: int, steps: int, every: int = 1) -> list[int]:
    """Which network takes each step of joint training: ``every`` steps of one, then the
    next, round and round, until each has had ``steps``."""
    order: list[int] = []
    for start in range(0, steps, every):
        n = min(every, steps - start)
        order += [i for i in range(networks) for _ in range(n)]
    return order


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
class _Batches:
    """Endless shuffled minibatches of one task's training set, on the device."""

    def __init__(self, images: Images, batch_size: int, seed: int, device: torch.device) -> None:
        self.x = images.x.to(device)
        self.y = images.y.to(device)
        self.n = len(images)
        self.batch_size = min(batch_size, self.n)
        self.gen = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(self.n, generator=self.gen)
        self.pos = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos + self.batch_size > self.n:
            self.order = torch.randperm(self.n, generator=self.gen)
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.batch_size].to(self.x.device)
        self.pos += self.batch_size
        return self.x[idx], self.y[idx]


def get_lr(settings: Settings, step: int) -> float:
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    if settings.schedule == "constant":
        return settings.lr
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    if settings.schedule == "step":
        return settings.lr * (0.1 ** int(progress / 0.34))
    return 0.5 * settings.lr * (1 + math.cos(math.pi * progress))


def _optimizer(params: list[nn.Parameter], s: Settings) -> torch.optim.Optimizer:
    if s.optimizer == "adam":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, nesterov=s.momentum > 0)


class _StepLoss(nn.Module):
    """The whole loss of one step of network ``i``: its task loss, plus RP through the
    (shared, or in the upper bound its own) RP head and DCC through the shared DCC head."""

    def __init__(
        self, nets: list[Network], aux: AuxHeads, own_heads: list[nn.Module | None], to_dcc: list[torch.Tensor]
    ) -> None:
        super().__init__()
        self.models = nn.ModuleList(n.model for n in nets)
        self.own_rp = nn.ModuleList(h if h is not None else nn.Identity() for h in own_heads)
        self.has_own_rp = [h is not None for h in own_heads]
        self.rp = aux.rp
        self.dcc = aux.dcc
        self.to_dcc = to_dcc

    def forward(self, i: int, x: torch.Tensor, y: torch.Tensor, rp_n: int) -> torch.Tensor:
        model = cast(SplitNetwork, self.models[i])
        extractor, head = model.extractor(), model.head()
        feats = extractor(x)
        loss = task_loss(head, feats, y)
        rp_head = self.own_rp[i] if self.has_own_rp[i] else self.rp
        if rp_head is not None:
            loss = loss + rp_loss(extractor, rp_head, x[:rp_n])
        if self.dcc is not None:
            loss = loss + dcc_loss(self.dcc, feats, y, self.to_dcc[i])
        return loss


def _rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes training together (1 outside a
    torch.distributed launch)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _mean_over_ranks(value: torch.Tensor, world: int) -> float:
    if world > 1:
        import torch.distributed as dist

        value = value.float().clone()
        dist.all_reduce(value)
        value /= world
    return float(value)


def train(
    nets: list[Network],
    aux: AuxHeads,
    settings: Settings,
    *,
    joint: bool,
    device: torch.device,
    progress: Progress | None = None,
    own_rp: bool = False,
) -> dict[str, Any]:
    """Train ``nets`` with the aux heads. ``joint`` alternates minibatches of all networks
    (one optimiser step each in turn); otherwise each network trains alone, in order.
    ``own_rp`` gives each network an unshared RP head (the upper bound)."""
    progress = progress or Progress()
    cuda = device.type == "cuda"
    for net in nets:
        net.model.to(device).train()
        if cuda:
            net.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    for m in aux.modules():
        m.to(device).train()
    own_heads: list[nn.Module | None] = [None] * len(nets)
    if own_rp:
        for i, net in enumerate(nets):
            torch.manual_seed(net.seed + 11)
            # Same architecture as the task head, but one per network: it regularises
            # like RP does without linking the networks (the paper's fair upper bound).
            own_heads[i] = (
                build(net.arch, split=net.split, **{**net.config, "num_classes": len(ROTATION_LABELS)})
                .head()
                .to(device)
                .train()
            )

    opts = [
        _optimizer(list(n.model.parameters()) + (list(own.parameters()) if own is not None else []), settings)
        for n, own in zip(nets, own_heads, strict=True)
    ]
    aux_params = [p for m in aux.modules() for p in m.parameters() if p.requires_grad]
    aux_opt = _optimizer(aux_params, settings) if aux_params and not aux.frozen else None
    # Every rank draws the same global batches (same seeds) and trains on its own slice
    # of each: the union over ranks is exactly the one-process batch.
    batches = [_Batches(n.task.train, settings.batch_size, n.seed + 1, device) for n in nets]
    gens = [torch.Generator().manual_seed(n.seed + 2) for n in nets]
    to_dcc = [
        torch.tensor([aux.dcc_labels.index(c) if c in aux.dcc_labels else -1 for c in n.task.classes], device=device)
        for n in nets
    ]
    losses = _StepLoss(nets, aux, own_heads, to_dcc)
    rank, world = _rank_and_world()
    step_loss: nn.Module = losses
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # One module computes a step's whole loss, so DDP sees one forward per backward;
        # the other networks' parameters are unused in that step (find_unused_parameters).
        # Frozen aux heads have no trainable parameter: DDP leaves them alone, and they
        # stay bit-identical on every rank.
        step_loss = DistributedDataParallel(
            losses,
            device_ids=[device.index] if cuda and device.index is not None else None,
            find_unused_parameters=True,
        )
    rp_n = max(1, round(settings.batch_size // world * settings.rp_fraction))

    schedule = (
        joint_schedule(len(nets), settings.steps, settings.alternate_every)
        if joint
        else [i for i in range(len(nets)) for _ in range(settings.steps)]
    )
    steps_done = [0] * len(nets)
    images, started, last_loss = 0, time.perf_counter(), float("nan")
    history: list[dict[str, Any]] = []
    for it, i in enumerate(schedule):
        if progress.should_stop():
            raise StopRequested()
        net, opt = nets[i], opts[i]
        lr = get_lr(settings, steps_done[i])
        for group in opt.param_groups:
            group["lr"] = lr
        if aux_opt is not None:
            for group in aux_opt.param_groups:
                group["lr"] = lr * settings.aux_lr_scale
        x, y = batches[i].next()
        if settings.augment:
            x = augment_batch(x.cpu(), gens[i]).to(device)
        if world > 1:
            x, y = torch.tensor_split(x, world)[rank], torch.tensor_split(y, world)[rank]
        if cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = step_loss(i, x, y, rp_n)
        opt.zero_grad(set_to_none=True)
        if aux_opt is not None:
            aux_opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if aux_opt is not None:
            aux_opt.step()
        steps_done[i] += 1
        uses_rp = aux.rp is not None or own_rp
        images += (x.shape[0] + (4 * rp_n if uses_rp else 0)) * world
        if (it + 1) % progress.every == 0 or it + 1 == len(schedule):
            last_loss = _mean_over_ranks(loss.detach(), world)
            elapsed = time.perf_counter() - started
            info = {
                "step": it + 1,
                "total": len(schedule),
                "task": net.task.name,
                "loss": last_loss,
                "lr": lr,
                "images_per_s": images / max(elapsed, 1e-9),
            }
            history.append(info)
            progress.on_step(info)
    elapsed = time.perf_counter() - started
    return {
        "steps": len(schedule),
        "seconds": elapsed,
        "images_per_s": images / max(elapsed, 1e-9),
        "final_loss": last_loss,
        "history": history,
    }
