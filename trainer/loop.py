"""The one training loop every job kind uses, in the manner of timm's ``train_one_epoch``
and nanoGPT's training setup.

A kind supplies a loss module (``loss(track, *batch) -> scalar``) and one or more
:class:`Track`\\ s: an endless source of CPU batches, the optimisers a step of that track
updates, its number of steps and learning-rate schedule. :func:`fit` owns the rest, once:
the device and the batches' transfer to it, bf16 autocast and channels_last on CUDA,
DistributedDataParallel under ``torch.distributed``, the learning rate of every step,
the order of the tracks (one after the other, or alternating), progress, and stopping
(cancel, lease lost, wall time) between any two steps.

No step waits on the device: losses stay tensors and are read only when progress is
reported (every ``Progress.every`` steps), image counts are host integers, and what a
step needs to know about its batch on the host (e.g. which examples are of common
classes) is computed on the CPU batch before it is moved.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from partsbin.parts.cancel import StopRequested, TimedOut
from partsbin.parts.jobs.settings import Settings

__all__ = [
    "Progress",
    "Track",
    "EpochBatches",
    "RandomBatches",
    "fit",
    "lr_schedule",
    "make_optimizer",
    "resolve_device",
    "rank_and_world",
    "augmenting",
    "sequential",
    "alternating",
]

Batch = tuple[torch.Tensor, ...]


@dataclass
class Progress:
    """What the loop reports, and asks: ``on_step`` is called every ``every`` steps and at
    the end of each track; ``should_stop`` before every step; past ``deadline`` (a
    ``time.monotonic()`` value) the job times out."""

    on_step: Callable[[dict[str, Any]], None] = lambda info: None
    should_stop: Callable[[], bool] = lambda: False
    every: int = 20
    deadline: float | None = None
    max_seconds: float | None = None

    def check(self) -> None:
        if self.should_stop():
            raise StopRequested()
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimedOut(f"the job ran past its wall time of {self.max_seconds or 0:,.0f} s (settings.max_seconds)")

    def phase(self, name: str, **info: Any) -> None:
        """Say what the job is doing between trainings (loading data, evaluating...)."""
        self.check()
        self.on_step({"phase": name, **info})


def resolve_device(settings: Settings) -> torch.device:
    if settings.device == "cuda" or (settings.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("settings.device is 'cuda' but no CUDA device is available")
        return torch.device("cuda")
    return torch.device("cpu")


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes training together (1 outside a
    torch.distributed launch)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def make_optimizer(params: Sequence[nn.Parameter], s: Settings) -> torch.optim.Optimizer:
    if s.optimizer == "adam":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, nesterov=s.momentum > 0)


def lr_schedule(s: Settings, horizon: int | None = None) -> Callable[[int], float]:
    """The learning rate at each step: linear warm-up, then constant, step (×0.1 at each
    third) or cosine to zero over ``horizon`` steps (default ``s.steps``)."""
    total = s.steps if horizon is None else horizon

    def lr(step: int) -> float:
        if step < s.warmup_steps:
            return s.lr * (step + 1) / s.warmup_steps
        if s.schedule == "constant":
            return s.lr
        progress = (step - s.warmup_steps) / max(1, total - s.warmup_steps)
        if s.schedule == "step":
            return s.lr * (0.1 ** int(progress / 0.34))
        return 0.5 * s.lr * (1 + math.cos(math.pi * progress))

    return lr


class EpochBatches:
    """Endless shuffled minibatches of CPU tensors (one permutation per epoch)."""

    def __init__(self, *tensors: torch.Tensor, batch_size: int, seed: int) -> None:
        self.tensors = tensors
        self.n = int(tensors[0].shape[0])
        if self.n == 0:
            raise ValueError("no training examples")
        self.batch_size = min(batch_size, self.n)
        self.gen = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(self.n, generator=self.gen)
        self.pos = 0

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if self.pos + self.batch_size > self.n:
            self.order = torch.randperm(self.n, generator=self.gen)
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return tuple(t[idx] for t in self.tensors)


class RandomBatches:
    """Endless minibatches drawn with replacement (for fits on precomputed features)."""

    def __init__(self, *tensors: torch.Tensor, batch_size: int, seed: int) -> None:
        self.tensors = tensors
        self.n = int(tensors[0].shape[0])
        if self.n == 0:
            raise ValueError("no training examples")
        self.batch_size = min(batch_size, self.n)
        self.gen = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        idx = torch.randint(0, self.n, (self.batch_size,), generator=self.gen)
        return tuple(t[idx] for t in self.tensors)


def augmenting(generator: torch.Generator) -> Callable[[Batch], Batch]:
    """A track's ``before``: random crop and flip of the batch's images (its first tensor)."""
    from partsbin.parts.data import augment_batch

    def before(batch: Batch) -> Batch:
        return (augment_batch(batch[0], generator), *batch[1:])

    return before


@dataclass
class Track:
    """One thing being trained: its batches, the optimisers its steps update (each with a
    learning-rate multiple: a shared aux head may learn at another rate), its steps."""

    name: str
    batches: Iterator[Batch]
    optimizers: list[tuple[torch.optim.Optimizer, float]]
    steps: int
    lr: Callable[[int], float]
    #: Images one step processes (a rotated batch counts four times): for images/s.
    images_per_step: int
    #: On the whole CPU batch, before it is split over ranks (augmentation).
    before: Callable[[Batch], Batch] | None = None
    #: On this rank's CPU slice, before it moves to the device (host-side indices).
    after: Callable[[Batch], Batch] | None = None


@dataclass
class FitStats:
    steps: int
    seconds: float
    images_per_s: float
    final_loss: float | None
    history: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "seconds": self.seconds,
            "images_per_s": self.images_per_s,
            "final_loss": self.final_loss,
        }


def sequential(steps: Sequence[int]) -> Iterator[int]:
    """Which track takes each step: all of the first track's steps, then the next's."""
    for i, n in enumerate(steps):
        for _ in range(n):
            yield i


def alternating(steps: Sequence[int], every: int = 1) -> Iterator[int]:
    """``every`` steps of one track, then the next, round and round, until each has had
    its steps (a generator: a billion steps cost no memory before the first)."""
    longest = max(steps, default=0)
    for start in range(0, longest, every):
        for i, n in enumerate(steps):
            for _ in range(max(0, min(every, n - start))):
                yield i


def _to_device(batch: Batch, device: torch.device, channels_last: bool) -> Batch:
    out = []
    for t in batch:
        t = t.to(device, non_blocking=True)
        if channels_last and t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        out.append(t)
    return tuple(out)


def fit(
    loss: nn.Module,
    tracks: list[Track],
    *,
    device: torch.device,
    progress: Progress | None = None,
    alternate_every: int | None = None,
    at_step: Callable[[int, int], None] | None = None,
    phase: str = "training",
) -> FitStats:
    """Train: ``loss(i, *batch)`` for track ``i``'s batches, one optimiser step each.

    Tracks run one after the other, or with ``alternate_every`` round-robin in blocks of
    that many steps (joint training). ``at_step(i, k)`` is called before track ``i``'s
    step ``k`` and once after each track's last step (``k == steps``): where a kind
    measures during training. Under ``torch.distributed`` every rank draws the same
    global batches (same seeds) and trains on its slice of each; the loss module is
    wrapped in DistributedDataParallel."""
    progress = progress or Progress()
    cuda = device.type == "cuda"
    loss.to(device)
    if cuda:
        loss.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    rank, world = rank_and_world()
    step_loss: nn.Module = loss
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # One module computes a step's whole loss, so DDP sees one forward per backward;
        # the other tracks' parameters are unused in that step (find_unused_parameters).
        # Frozen parts have no trainable parameter: DDP leaves them alone, and they stay
        # bit-identical on every rank.
        step_loss = DistributedDataParallel(
            loss, device_ids=[device.index] if cuda and device.index is not None else None, find_unused_parameters=True
        )
    counts = [t.steps for t in tracks]
    order = sequential(counts) if alternate_every is None else alternating(counts, alternate_every)
    total = sum(t.steps for t in tracks)
    done = [0] * len(tracks)
    last: list[torch.Tensor | None] = [None] * len(tracks)
    images, it, started = 0, 0, time.perf_counter()
    history: list[dict[str, Any]] = []
    final_loss: float | None = None

    def report(i: int, lr: float) -> None:
        nonlocal final_loss
        value = last[i]
        if value is not None:
            if world > 1:
                import torch.distributed as dist

                value = value.float().clone()
                dist.all_reduce(value)
                value /= world
            final_loss = float(value)  # the only read of a device value: every `every` steps
        elapsed = time.perf_counter() - started
        info = {
            "phase": phase,
            "task": tracks[i].name,
            "network": i + 1,
            "networks": len(tracks),
            "step": done[i],
            "steps": tracks[i].steps,
            "done": it,
            "total": total,
            "loss": final_loss,
            "lr": lr,
            "images_per_s": images / max(elapsed, 1e-9),
        }
        history.append(info)
        progress.on_step(info)

    for i in order:
        progress.check()
        track, k = tracks[i], done[i]
        if at_step is not None:
            at_step(i, k)
        lr = track.lr(k)
        for opt, scale in track.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr * scale
        batch = next(track.batches)
        if track.before is not None:
            batch = track.before(batch)
        if world > 1:
            batch = tuple(torch.tensor_split(t, world)[rank] for t in batch)
        if track.after is not None:
            batch = track.after(batch)
        if device.type != "cpu":
            batch = _to_device(batch, device, cuda)
        # bf16 autocast on CUDA only; on the CPU even a disabled autocast context costs each step.
        with torch.autocast(device.type, dtype=torch.bfloat16) if cuda else contextlib.nullcontext():
            value = step_loss(i, *batch)
        for opt, _ in track.optimizers:
            opt.zero_grad(set_to_none=True)
        value.backward()
        for opt, _ in track.optimizers:
            opt.step()
        last[i] = value.detach()
        done[i] += 1
        it += 1
        images += track.images_per_step
        if it % progress.every == 0 or done[i] == track.steps:
            report(i, lr)
    if at_step is not None:
        for i, t in enumerate(tracks):
            at_step(i, t.steps)
    seconds = time.perf_counter() - started
    return FitStats(total, seconds, images / max(seconds, 1e-9), final_loss, history)
