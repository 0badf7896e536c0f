"""Why the tiny FCT run closes little of the top-1 gap: transform width and steps on digits.

    python bench/fct_transform_capacity.py     # ~25 s on one core

Old (classes 0-4, 60 steps) and new (all classes, 150 steps) ResNet-8 width 8 networks
trained once (seed 0, not published), a side-info model (RP, 16-d); then transforms of
width 64/256 trained for 300/2000 steps, with and without side-information, each scored
by top-1/mAP of new queries against the transformed old test gallery, and by the L2 error
on the test and the training embeddings (overfitting shows as a training error near 0).
"""

from __future__ import annotations

import time

import torch

from partsbin.client.bridges import transform_embeddings
from partsbin.parts.data import load_split
from partsbin.parts.data.spec import DataSpec
from partsbin.parts.jobs.settings import Settings
from partsbin.parts.jobs.train import TrainResult, TrainSpec
from partsbin.parts.retrieval import retrieval_metrics
from partsbin.trainer.fct import embeddings, side_vectors, train_side_info, train_transform
from partsbin.trainer.jobs import run_job


def extractor(classes: list[str], steps: int) -> torch.nn.Module:
    spec = TrainSpec.model_validate(
        {
            "name": "n",
            "scheme": "independent",
            "publish": False,
            "arch": {"name": "resnet_cifar", "config": {"depth": 8, "width": 8}},
            "tasks": [{"name": "t", "data": {"source": "digits", "classes": classes}}],
            "settings": {"steps": steps, "batch_size": 64, "lr": 0.05, "seed": 0, "threads": 1},
        }
    )
    result = run_job(spec)
    assert isinstance(result, TrainResult)
    return result.trained[0].extractor


def transform_settings(steps: int) -> Settings:
    """``train_transform``'s own defaults (Adam at 3e-3, cosine, batch 128, seed 0) for ``steps`` steps."""
    return Settings(optimizer="adam", lr=3e-3, weight_decay=0.0, schedule="cosine", steps=steps, batch_size=128)


def main() -> None:
    torch.set_num_threads(1)
    started = time.time()
    train, test = load_split(DataSpec(source="digits"), "train"), load_split(DataSpec(source="digits"), "test")
    old, new = extractor(train.classes[:5], 60), extractor(train.classes, 150)
    side = train_side_info(train.x[train.y < 5], dim=16, steps=100, seed=0)
    o, n, s = embeddings(old, train.x), embeddings(new, train.x), side_vectors(side, train.x)
    ot, nt, st = embeddings(old, test.x), embeddings(new, test.x), side_vectors(side, test.x)
    y = test.y
    print("old/old top-1", retrieval_metrics(ot, y, ot, y, exclude_self=True).top1)
    print("new/new top-1", retrieval_metrics(nt, y, nt, y, exclude_self=True).top1)
    for hidden, steps in ((64, 300), (256, 300), (256, 2000)):
        for use in (True, False):
            t = train_transform(o, n, s if use else None, hidden=hidden, settings=transform_settings(steps))
            g = transform_embeddings(t, ot, st if use else None)
            m = retrieval_metrics(nt, y, g, y, exclude_self=True)
            test_err = float(((g - nt) ** 2).mean())
            train_err = float(((transform_embeddings(t, o, s if use else None) - n) ** 2).mean())
            print(
                f"width {hidden} steps {steps} {'side-info' if use else 'no side-info'}: top-1 {m.top1:.3f} "
                f"mAP {m.mAP:.3f} L2 test {test_err:.4f} train {train_err:.4f}"
            )
    print(f"{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
