"""The standard two-domain pairs (docs/architecture.md, "Data"), available by name.

Fashion-MNIST: task A = even-indexed training images, classes 0–8; task B = odd-indexed
training images seen through a domain shift (downsample 28→14→28 bilinear, invert
intensities), classes 1–9; common classes 1–8; test on the test split with the same
transforms. Digits: the same construction on scikit-learn's digits (8→4→8).
"""

from __future__ import annotations

from partsbin.parts.data.sources import FASHION_MNIST_CLASSES
from partsbin.parts.data.spec import DataSpec, Transform

__all__ = ["pair_data"]


def pair_data(pair: str, task: str) -> tuple[DataSpec, DataSpec]:
    """(train, test) data specs of task ``a`` or ``b`` of a named pair."""
    if pair == "fashion-mnist":
        source, names, size = "fashion-mnist", FASHION_MNIST_CLASSES, 28
    elif pair == "digits":
        source, names, size = "digits", [str(i) for i in range(10)], 8
    else:
        raise ValueError(f"unknown pair {pair!r}: expected fashion-mnist or digits")
    if task == "a":
        classes, indices, shift = names[0:9], "even", []
    elif task == "b":
        classes, indices, shift = (
            names[1:10],
            "odd",
            [Transform(op="resize", size=size // 2, back_to=size), Transform(op="invert")],
        )
    else:
        raise ValueError(f"unknown pair task {task!r}: expected a or b")
    train = DataSpec(source=source, classes=classes, indices=indices, transforms=shift)  # type: ignore[arg-type]
    test = DataSpec(source=source, classes=classes, transforms=shift)  # type: ignore[arg-type]
    return train, test
