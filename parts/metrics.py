"""Recombination accuracy (paper §4; the precise rule is in docs/architecture.md).

Extractor of task a + head of task b, on task a's test images of the classes the two
share — matched by label name. The prediction is taken over the shared classes'
logits (our choice), and the unrestricted figure (argmax over all of the head's
classes) is reported too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # The registry uses wilson_interval; importing torch for it would add seconds to
    # `partsbin serve`'s start (bench/startup_bench.py).
    import torch

__all__ = ["Accuracy", "shared_classes", "recombination_accuracy", "wilson_interval"]


@dataclass(frozen=True)
class Accuracy:
    restricted: float
    unrestricted: float
    n: int
    ci95: tuple[float, float]


def shared_classes(data_labels: list[str], head_labels: list[str]) -> list[str]:
    """Labels both sides know, in the data's order."""
    head = set(head_labels)
    return [c for c in data_labels if c in head]


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval for a proportion (well-behaved near 0 and 1)."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def recombination_accuracy(
    logits: torch.Tensor, targets: torch.Tensor, data_labels: list[str], head_labels: list[str]
) -> Accuracy:
    """``logits``: head outputs (N × len(head_labels)); ``targets``: indices into ``data_labels``.

    Only examples whose class the head also knows count.
    """
    import torch

    common = shared_classes(data_labels, head_labels)
    if not common:
        raise ValueError("the data and the head share no class label")
    data_to_head = torch.tensor(
        [head_labels.index(c) if c in head_labels else -1 for c in data_labels], device=targets.device
    )
    want = data_to_head[targets]
    keep = want >= 0
    logits, want = logits[keep], want[keep]
    n = int(keep.sum())
    if n == 0:
        return Accuracy(0.0, 0.0, 0, (0.0, 1.0))
    cols = torch.tensor([head_labels.index(c) for c in common], device=logits.device)
    restricted_pred = cols[logits[:, cols].argmax(1)]
    correct = int((restricted_pred == want).sum())
    unrestricted = float((logits.argmax(1) == want).float().mean())
    return Accuracy(correct / n, unrestricted, n, wilson_interval(correct, n))
