"""What every kind writes into the cards it publishes: one provenance, one description of
the data, and the push itself.

A card's ``provenance`` says how its weights came to be: the seed, the job, the library
versions, the settings, and the data (:func:`data_provenance`: the source or registered
dataset, its digest, the selections and shift, and how the benchmark rebuilds the test
set). Every runner calls these, so every card records the same things the same way.
"""

from __future__ import annotations

import platform
from typing import Any

import torch
from torch import nn

from partsbin import __version__
from partsbin.parts.data import Images, StreamedImages
from partsbin.parts.data.spec import DataSpec

__all__ = ["library_versions", "provenance", "data_provenance", "push"]


def library_versions() -> dict[str, str]:
    import numpy
    import safetensors

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
        "partsbin": __version__,
    }


def data_provenance(
    data: DataSpec,
    images: Images | StreamedImages | None,
    *,
    task: str | None = None,
    test: DataSpec | None = None,
    test_images: Images | StreamedImages | None = None,
    test_limit: int | None = None,
    classes: list[str] | None = None,
) -> dict[str, Any]:
    """A card's ``provenance.dataset``: what the training data was (by content digest, and
    by the registered dataset's digest where there is one), and how the benchmark rebuilds
    the test set (``test``: a data spec, its ``test_limit`` and content digest)."""
    out: dict[str, Any] = {
        "name": data.label,
        "split": "train",
        "classes": classes if classes is not None else (images.classes or None if images is not None else data.classes),
        "transform": [t.model_dump(mode="json") for t in data.transforms],
        "indices": data.indices,
        "task": task,
        # What identifies the data wherever its file lies (the spec's path only says where
        # it was found): `partsbin bench --data TASK=PATH` checks a copy against it.
        "source_digest": images.source_digest if images is not None else None,
        "spec": data.model_dump(mode="json", exclude_none=True),
    }
    if data.dataset is not None:
        out["dataset"] = {"ref": data.dataset, "digest": images.dataset_digest if images is not None else None}
    if test is not None:
        out["test"] = {
            **test.model_dump(mode="json"),
            "test_limit": test_limit,
            "source_digest": test_images.source_digest if test_images is not None else None,
            # The test set itself (source, selections, shift, size): what an evaluation of
            # this part on its own test set names (the registry compares the two).
            "data_digest": test_images.data_digest if test_images is not None else None,
        }
    return out


def provenance(
    *,
    job: str | None,
    seed: int | None,
    settings: dict[str, Any],
    dataset: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The card's ``provenance``; ``extra`` adds what the kind alone knows
    (``adapted_from``, ``updated_from``, ``transfer``...)."""
    return {
        "dataset": dataset,
        "settings": settings,
        "seed": seed,
        "job": job,
        "libraries": library_versions(),
        **extra,
    }


def push(registry: Any, module: nn.Module, card: Any) -> Any:
    """Publish ``module`` (moved to the CPU: safetensors of CPU tensors) with ``card``."""
    return registry.push(module.cpu(), card)
