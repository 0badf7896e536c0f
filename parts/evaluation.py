"""Evaluating an extractor + head on test images, as the paper measures (§4).

One routine serves the trainer's own-task figure and the client's recombination matrix,
so the two agree to the image. With BatchNorm in batch-statistics mode the output of an
image depends on the others in its batch, so what a batch holds is a setting of every
evaluation, recorded beside its result:

- ``common-classes`` (the default, the paper's: accuracy "on the common classes"): only
  the images of classes the head also knows go through the network, shuffled with a
  fixed seed and cut into batches of ``batch_size``.
- ``all-classes``: every test image of the extractor's task goes through, shuffled the
  same way; only the common classes are counted. Batches then mix in the task's private
  classes, which shifts the batch statistics (measured on a Fashion-MNIST pair: 81.4%
  restricted instead of 84.6%).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from partsbin.parts.metrics import Accuracy, recombination_accuracy, shared_classes

if TYPE_CHECKING:
    import torch
    from torch import nn

    from partsbin.parts.data import Images

__all__ = ["BatchComposition", "EvalSettings", "evaluate_pair", "select_eval_images"]

BatchComposition = Literal["common-classes", "all-classes"]


@dataclass(frozen=True)
class EvalSettings:
    """How an evaluation was made; recorded with every result."""

    bn_mode: Literal["batch", "running"] = "batch"
    batch_size: int = 256
    batch_composition: BatchComposition = "common-classes"
    shuffle_seed: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        images = "common-class images" if self.batch_composition == "common-classes" else "all of the task's images"
        return (
            f"BatchNorm {self.bn_mode} statistics; batches of {self.batch_size} {images}, "
            f"shuffled with seed {self.shuffle_seed}"
        )


def select_eval_images(images: Images, head_labels: list[str], settings: EvalSettings) -> Images:
    """The images that go through the network, in the order they go, for ``settings``."""
    import torch

    keep = torch.arange(len(images))
    if settings.batch_composition == "common-classes":
        common = shared_classes(images.classes, head_labels)
        known = torch.tensor([c in common for c in images.classes], dtype=torch.bool)
        keep = keep[known[images.y]]
    order = torch.randperm(len(keep), generator=torch.Generator().manual_seed(settings.shuffle_seed))
    return images.subset(keep[order])


def evaluate_pair(
    extractor: nn.Module,
    head: nn.Module,
    images: Images,
    head_labels: list[str],
    settings: EvalSettings,
    *,
    device: torch.device | str = "cpu",
) -> Accuracy:
    """Accuracy of ``head(extractor(x))`` over ``images`` (the extractor's task), counted on
    the classes both know, with the prediction over their logits and unrestricted."""
    import torch

    from partsbin.parts.batchnorm import evaluating

    chosen = select_eval_images(images, head_labels, settings)
    outs = []
    with evaluating(extractor, settings.bn_mode), evaluating(head, settings.bn_mode), torch.no_grad():
        for start in range(0, len(chosen), settings.batch_size):
            x = chosen.x[start : start + settings.batch_size].to(device)
            outs.append(head(extractor(x)).float().cpu())
    logits = torch.cat(outs) if outs else torch.zeros(0, len(head_labels))
    return recombination_accuracy(logits, chosen.y, chosen.classes, head_labels)
