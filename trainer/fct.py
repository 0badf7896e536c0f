"""Forward Compatible Training (Ramanujan et al., CVPR 2022) in partsbin's terms.

- **Side-information** (role ``side-info``): a small network trained on the *old* data
  with a self-supervised objective, giving a low-dimensional vector per image that is
  stored beside each old embedding. We use rotation prediction rather than FCT's
  contrastive objective: partsbin already trains RP heads (the same rotations and loss),
  and a contrastive objective needs large batches and a strong augmentation pipeline that
  a 2-core CPU run cannot afford. What matters for FCT is that the vector keeps
  information the old model's class-trained embedding threw away, and a self-supervised
  objective does not depend on the old classes.
- **Transformation** (role ``transform``): old embedding (+ side-information) to the new
  model's embedding: two 1×1-conv projections, concatenated, mixed by a 1×1-conv MLP with
  BatchNorm (``fct_transform``), trained with an L2 loss on the *new* training data. The
  new model's training is not changed.

Embeddings are the globally pooled junction features (what the heads see, pooled).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from partsbin.parts.archs import SplitNetwork, build
from partsbin.parts.archs.bridges import with_side_info
from partsbin.parts.cpus import use_threads
from partsbin.parts.jobs.settings import Settings
from partsbin.parts.retrieval import pooled
from partsbin.trainer.loop import Progress, RandomBatches, Track, fit, lr_schedule, make_optimizer
from partsbin.trainer.rotation import rotate_batch
from partsbin.trainer.stitch import features

__all__ = [
    "embeddings",
    "train_side_info",
    "side_vectors",
    "train_transform",
    "apply_transform",
    "FCTSettings",
    "run_fct_experiment",
    "top1_by_group",
]


@torch.no_grad()
def embeddings(extractor: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, C, 1, 1): the pooled junction features, with batch statistics as elsewhere."""
    return pooled(features(extractor, x))[:, :, None, None]


class _SideInfoLoss(nn.Module):
    """Rotation prediction from the side-info vector (a linear RP head on it)."""

    def __init__(self, net: nn.Module, dim: int) -> None:
        super().__init__()
        self.net = net
        self.rp = nn.Linear(dim, 4)

    def forward(self, i: int, x: torch.Tensor) -> torch.Tensor:
        rotated, labels = rotate_batch(x)
        return F.cross_entropy(self.rp(self.net(rotated).flatten(1)), labels)


def train_side_info(
    x: torch.Tensor,
    *,
    width: int = 8,
    dim: int = 16,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    device: torch.device | None = None,
    progress: Progress | None = None,
) -> SplitNetwork:
    """The side-information network, trained by rotation prediction on ``x`` (old images)."""
    torch.manual_seed(seed)
    net = build("side_info", in_chans=int(x.shape[1]), width=width, dim=dim)
    loss = _SideInfoLoss(net, dim)
    settings = Settings(optimizer="adam", lr=lr, weight_decay=0.0, schedule="constant", steps=max(1, steps))
    net.train()
    n = min(batch_size, len(x))
    track = Track(
        name="side-info",
        batches=RandomBatches(x, batch_size=n, seed=seed),
        optimizers=[(make_optimizer(list(loss.parameters()), settings), 1.0)],
        steps=steps,
        lr=lr_schedule(settings),
        images_per_step=4 * n,
    )
    fit(loss, [track], device=device or torch.device("cpu"), progress=progress, phase="side-info")
    return net.cpu().eval()


@torch.no_grad()
def side_vectors(side: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """(N, dim, 1, 1), with the side-info model's own running statistics: one image's
    vector never depends on the batch it was stored in."""
    side.eval()
    return torch.cat([side(x[s : s + batch_size]) for s in range(0, len(x), batch_size)])


class _TransformLoss(nn.Module):
    """FCT's L2 between the transformed old features (+ side-information) and the new."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, i: int, old: torch.Tensor, new: torch.Tensor, *side: torch.Tensor) -> torch.Tensor:
        inputs = old if not side else with_side_info(old, side[0])
        return F.mse_loss(self.net(inputs), new)


def train_transform(
    old: torch.Tensor,
    new: torch.Tensor,
    side: torch.Tensor | None = None,
    *,
    hidden: int = 128,
    settings: Settings | None = None,
    device: torch.device | None = None,
    progress: Progress | None = None,
) -> SplitNetwork:
    """Fit old (+ side) → new features with an L2 loss (FCT's transformation). ``old`` and
    ``new`` are pooled embeddings (N, C, 1, 1) or junction features (N, C, H, W): the
    transform is 1×1 convolutions, the same at every position; ``side`` is (N, D, 1, 1),
    repeated at every position. ``settings``: Adam at 3e-3 with a cosine schedule, 600
    steps of 128 by default."""
    s = settings or Settings(optimizer="adam", lr=3e-3, weight_decay=0.0, schedule="cosine", steps=600, batch_size=128)
    torch.manual_seed(s.seed)
    side_chans = 0 if side is None else int(side.shape[1])
    net = build(
        "fct_transform", in_chans=int(old.shape[1]), side_chans=side_chans, out_chans=int(new.shape[1]), hidden=hidden
    )
    net.train()
    tensors = (old, new) if side is None else (old, new, side)
    track = Track(
        name="transform",
        batches=RandomBatches(*tensors, batch_size=s.batch_size, seed=s.seed),
        optimizers=[(make_optimizer(list(net.parameters()), s), 1.0)],
        steps=s.steps,
        lr=lr_schedule(s),
        images_per_step=min(s.batch_size, len(old)),
    )
    fit(_TransformLoss(net), [track], device=device or torch.device("cpu"), progress=progress, phase="transform")
    return net.cpu().eval()


@torch.no_grad()
def apply_transform(transform: nn.Module, old: torch.Tensor, side: torch.Tensor | None = None) -> torch.Tensor:
    """New-space embeddings from stored old ones (running statistics: a fixed map)."""
    from partsbin.client.bridges import transform_embeddings

    return transform_embeddings(transform, old, side)


#: The new (and BCT) networks' seed is the run's seed plus this.
NEW_SEED_OFFSET = 1000


@dataclass
class FCTSettings:
    """One FCT run: old model on the first ``old_classes`` classes, new on all of them."""

    source: str = "digits"
    namespace: str = "fct"
    old_classes: int = 5
    arch: dict[str, Any] = field(default_factory=lambda: {"name": "resnet_cifar", "config": {"depth": 8, "width": 8}})
    new_arch: dict[str, Any] | None = None
    old_steps: int = 150
    new_steps: int = 300
    side_steps: int = 300
    side_dim: int = 16
    side_width: int = 8
    transform_steps: int = 600
    hidden: int = 128
    batch_size: int = 64
    seed: int = 0
    test_limit: int | None = None
    #: The transform trains on this many new training images (chosen by the seed).
    transform_images: int | None = None
    #: The same for the transforms of junction features (H x W times the memory per image).
    junction_images: int | None = 5000
    bct: bool = False
    threads: int | None = None


def _train(
    registry: Any,
    s: FCTSettings,
    name: str,
    classes: list[str],
    arch: dict[str, Any],
    steps: int,
    seed_offset: int = 0,
    **extra: Any,
) -> Any:
    from partsbin.parts.jobs.train import TrainSpec
    from partsbin.trainer.jobs import run_job

    spec = TrainSpec.model_validate(
        {
            "name": name,
            "namespace": s.namespace,
            "arch": arch,
            "tasks": [{"name": name, "data": {"source": s.source, "classes": classes}}],
            "settings": {"steps": steps, "batch_size": s.batch_size, "lr": 0.05, "seed": s.seed + seed_offset},
            **extra,
        }
    )
    return run_job(spec, registry)


def _ref_of(refs: list[str], role: str) -> str:
    return next(r for r in refs if r.split("@")[0].endswith(f"-{role}"))


def _fct_job(
    registry: Any, s: FCTSettings, name: str, old: str, new: str, space: str, side: bool | str, head: str | None = None
) -> Any:
    from partsbin.parts.jobs.bridges import FCTSpec
    from partsbin.trainer.jobs import run_job

    spec = FCTSpec.model_validate(
        dict(
            name=name,
            namespace=s.namespace,
            old_extractor=old,
            new_extractor=new,
            new_head=head,
            space=space,
            side_info=side,
            images=s.transform_images if space == "embedding" else s.junction_images,
            hidden=s.hidden,
            settings={"steps": s.transform_steps, "test_limit": s.test_limit, "seed": s.seed},
        )
    )
    if side is True:  # only a job that trains the side-info model takes its settings
        spec = spec.model_copy(update={"side_dim": s.side_dim, "side_width": s.side_width, "side_steps": s.side_steps})
    return run_job(spec, registry)


def run_fct_experiment(registry: Any, s: FCTSettings) -> dict[str, Any]:
    """Train old, new (and BCT) networks through the trainer; side-info models and
    transforms through ``fct`` jobs, which publish them; measure retrieval on the test split
    through the registry's parts (``Registry.transform_gallery`` for the transformed
    gallery) and classification by the new head on transformed old junction features
    through ``Registry.bench_path``. Returns the table's rows."""
    from partsbin.parts.data import load_split
    from partsbin.parts.data.spec import DataSpec
    from partsbin.parts.retrieval import retrieval_metrics

    use_threads(s.threads)
    test = load_split(DataSpec(source=s.source), "test")  # type: ignore[arg-type]
    if s.test_limit:
        test = test.subset(range(min(s.test_limit, len(test))))
    classes = test.classes
    old_cls = classes[: s.old_classes]
    # With BCT the old run also learns a DCC head over the old classes (then frozen): the
    # classifier the BCT network is trained against.
    old_how: dict[str, Any] = (
        {"scheme": "incremental", "methods": ["DCC"], "dcc_labels": old_cls} if s.bct else {"scheme": "independent"}
    )
    old_run = _train(registry, s, "old", old_cls, s.arch, s.old_steps, **old_how)
    # The new model is trained apart from the old one: from other initial weights too (the
    # same seed would give identical initial weights, which alone makes parts compatible).
    new_run = _train(
        registry,
        s,
        "new",
        classes,
        s.new_arch or s.arch,
        s.new_steps,
        seed_offset=NEW_SEED_OFFSET,
        scheme="independent",
    )
    old_ref, new_ref = _ref_of(old_run.refs, "extractor"), _ref_of(new_run.refs, "extractor")
    new_head = _ref_of(new_run.refs, "head")
    old_net, new_net = registry.pull(old_ref).build(), registry.pull(new_ref).build()

    # The side-info model is trained (on the old data) by the first job and reused by the others.
    with_side = _fct_job(registry, s, "transform-side", old_ref, new_ref, "embedding", True)
    side_ref, transform_side = with_side.refs
    transform = _fct_job(registry, s, "transform", old_ref, new_ref, "embedding", False).refs[0]
    junction = {
        "side": _fct_job(registry, s, "junction-side", old_ref, new_ref, "junction", side_ref, new_head),
        "plain": _fct_job(registry, s, "junction", old_ref, new_ref, "junction", False, new_head),
    }
    side_net = registry.pull(side_ref).build()

    # Retrieval on the test split, leave-one-out. The gallery is "stored": old embeddings
    # and side-information vectors, computed once by the old system.
    y = test.y
    old_te, new_te = embeddings(old_net, test.x), embeddings(new_net, test.x)
    side_te = side_vectors(side_net, test.x)
    rows: dict[str, Any] = {
        "old/old": retrieval_metrics(old_te, y, old_te, y, exclude_self=True).as_dict(),
        "new/new": retrieval_metrics(new_te, y, new_te, y, exclude_self=True).as_dict(),
    }
    moved_side = registry.transform_gallery(transform_side, old_te, side_te)
    moved = registry.transform_gallery(transform, old_te)
    rows["new/FCT(old+side)"] = retrieval_metrics(new_te, y, moved_side, y, exclude_self=True).as_dict()
    rows["new/FCT(old, no side-info)"] = retrieval_metrics(new_te, y, moved, y, exclude_self=True).as_dict()
    if s.bct:
        rows.update(_bct_rows(registry, s, old_run, classes, test, old_te))
    # Why side-information helps or not: what the side vectors alone retrieve, and each row
    # on the old classes and on the classes the old model never saw.
    rows["side-info alone"] = retrieval_metrics(side_te, y, side_te, y, exclude_self=True).as_dict()
    galleries = {
        "old/old": (old_te, old_te),
        "new/new": (new_te, new_te),
        "new/FCT(old+side)": (new_te, moved_side),
        "new/FCT(old, no side-info)": (new_te, moved),
        "side-info alone": (side_te, side_te),
    }
    by_group = {row: top1_by_group(q, g, y, s.old_classes) for row, (q, g) in galleries.items()}

    # Classification: the new head on transformed old junction features, measured as the
    # benchmark measures a path through bridges (and posted, so /paths ranks it).
    test_data = {"source": s.source, "limit": s.test_limit} if s.test_limit else {"source": s.source}
    classification = {
        "new head on new features": junction["side"].classification["new"],
        "new head on old features, no bridge": junction["side"].classification["no_bridge"],
    }
    for key, label in (("side", "new head on FCT(old+side)"), ("plain", "new head on FCT(old, no side-info)")):
        # Not posted again: the fct job posted this path's evaluation already.
        measured = registry.bench_path(old_ref, new_head, via=[junction[key].refs[-1]], data=test_data, post=False)
        classification[label] = measured["accuracy"]
    # Throughput: transforming stored embeddings against running the new backbone on the
    # images (backfilling); both modules already built, best of three runs each.
    from partsbin.client.bridges import transform_embeddings

    stored = registry.pull(transform_side).build()
    backbone_seconds = transform_seconds = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        embeddings(new_net, test.x)
        backbone_seconds = min(backbone_seconds, time.perf_counter() - t0)
        t0 = time.perf_counter()
        transform_embeddings(stored, old_te, side_te)
        transform_seconds = min(transform_seconds, time.perf_counter() - t0)
    return {
        "rows": rows,
        "top1_by_group": by_group,
        "classification": classification,
        "refs": {
            "old": old_ref,
            "new": new_ref,
            "new_head": new_head,
            "side_info": side_ref,
            "transform_side": transform_side,
            "transform": transform,
            "junction_side": junction["side"].refs[-1],
            "junction": junction["plain"].refs[-1],
        },
        "own_task": {
            "old": old_run.tasks["old"].own_task_accuracy,
            "new": new_run.tasks["new"].own_task_accuracy,
        },
        "throughput": {
            "images": len(test),
            "transform_images_per_s": len(test) / max(transform_seconds, 1e-9),
            "backbone_images_per_s": len(test) / max(backbone_seconds, 1e-9),
        },
        "fct_job_seconds": with_side.seconds,
        "settings": {k: v for k, v in asdict(s).items()},
    }


@torch.no_grad()
def top1_by_group(query: torch.Tensor, gallery: torch.Tensor, y: torch.Tensor, old_classes: int) -> dict[str, float]:
    """Leave-one-out top-1 of queries of the old classes (label < ``old_classes``) and of
    the new ones, over the whole gallery: where a gap between two rows comes from."""
    q = F.normalize(pooled(query).float(), dim=1)
    g = F.normalize(pooled(gallery).float(), dim=1)
    hit = torch.empty(len(q), dtype=torch.bool)
    for start in range(0, len(q), 1024):
        sims = q[start : start + 1024] @ g.T
        rows = torch.arange(len(sims))
        sims[rows, rows + start] = -float("inf")
        hit[start : start + len(sims)] = y[sims.argmax(1)] == y[start : start + len(sims)]
    old = y < old_classes
    return {"old classes": float(hit[old].float().mean()), "new classes": float(hit[~old].float().mean())}


def _bct_rows(
    registry: Any, s: FCTSettings, old_run: Any, classes: list[str], test: Any, old_te: torch.Tensor
) -> dict[str, Any]:
    """BCT (Shen et al. 2020) through partsbin's incremental scheme: the new network trained
    against the old run's frozen DCC head (a classifier over the old classes, learnt with
    the old network) as an extra loss; its queries are compared with the old gallery."""
    from partsbin.parts.retrieval import retrieval_metrics

    dcc = next((r for r in old_run.refs if r.split("@")[0].endswith("-aux-dcc")), None)
    if dcc is None:
        return {}
    bct = _train(
        registry,
        s,
        "bct",
        classes,
        s.new_arch or s.arch,
        s.new_steps,
        seed_offset=NEW_SEED_OFFSET,
        scheme="incremental",
        methods=["DCC"],
        anchors=[dcc],
    )
    bct_net = registry.pull(_ref_of(bct.refs, "extractor")).build()
    bct_te = embeddings(bct_net, test.x)
    y = test.y
    return {
        "BCT/old": retrieval_metrics(bct_te, y, old_te, y, exclude_self=True).as_dict(),
        "BCT/BCT": retrieval_metrics(bct_te, y, bct_te, y, exclude_self=True).as_dict(),
    }
