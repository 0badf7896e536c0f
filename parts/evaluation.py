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

from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from partsbin.parts.cancel import checkpoint
from partsbin.parts.metrics import Accuracy, recombination_accuracy, shared_classes

if TYPE_CHECKING:
    import torch
    from torch import nn

    from partsbin.parts.data import Images, StreamedImages

__all__ = ["BatchComposition", "EvalSettings", "evaluate_heads", "evaluate_pair", "select_eval_images"]

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


def select_eval_images(
    images: Images | StreamedImages, head_labels: list[str], settings: EvalSettings
) -> Images | StreamedImages:
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
    images: Images | StreamedImages,
    head_labels: list[str],
    settings: EvalSettings,
    *,
    device: torch.device | str = "cpu",
) -> Accuracy:
    """Accuracy of ``head(extractor(x))`` over ``images`` (the extractor's task), counted on
    the classes both know, with the prediction over their logits and unrestricted."""
    return evaluate_heads(extractor, [(head, head_labels)], images, settings, device=device)[0]


def evaluate_heads(
    extractor: nn.Module,
    heads: list[tuple[nn.Module, list[str]]],
    images: Images | StreamedImages,
    settings: EvalSettings,
    *,
    device: torch.device | str = "cpu",
) -> list[Accuracy]:
    """:func:`evaluate_pair` for one extractor and many heads, computing the extractor's
    features once per set of images: heads that share classes with the task alike see
    the same batches, so they run on the same features, batch by batch. The result is
    the same as evaluating each pair on its own (tested)."""
    import torch

    from partsbin.parts.batchnorm import evaluating

    results: list[Accuracy | None] = [None] * len(heads)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, (_, labels) in enumerate(heads):
        common = tuple(shared_classes(images.classes, labels))
        if not common:
            results[i] = Accuracy(0.0, 0.0, 0, (0.0, 1.0))  # nothing to count: no class in common
            continue
        groups.setdefault(common if settings.batch_composition == "common-classes" else (), []).append(i)
    with ExitStack() as stack, torch.no_grad():
        for module in (extractor, *(h for h, _ in heads)):
            stack.enter_context(evaluating(module, settings.bn_mode))
        for members in groups.values():
            chosen = select_eval_images(images, heads[members[0]][1], settings)
            outs: dict[int, list[torch.Tensor]] = {i: [] for i in members}
            # Batch by batch: a streamed test set is decoded as it goes, never whole.
            for x in chosen.image_batches(settings.batch_size):
                checkpoint()  # a cancelled job stops here too
                feats = extractor(x.to(device))
                for i in members:
                    outs[i].append(heads[i][0](feats).float().cpu())
            for i in members:
                labels = heads[i][1]
                logits = torch.cat(outs[i]) if outs[i] else torch.zeros(0, len(labels))
                results[i] = recombination_accuracy(logits, chosen.y, chosen.classes, labels)
    return [r for r in results if r is not None]
