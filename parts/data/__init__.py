"""Data for training and evaluation: loaders, selections, domain shifts, named pairs.

The names below are imported on first use: the data specs (:mod:`partsbin.parts.data.spec`)
are read by the registry and the CLI, which must not pay for torch to validate a spec.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "Images",
    "DataMissing",
    "load_source",
    "TaskData",
    "load_task",
    "load_raw",
    "load_split",
    "load_data",
    "in_memory",
    "StreamedImages",
    "default_test",
    "augment_batch",
    "pair_data",
]

_WHERE = {
    "Images": "sources",
    "DataMissing": "sources",
    "load_source": "sources",
    "TaskData": "tasks",
    "load_task": "tasks",
    "load_raw": "tasks",
    "load_split": "tasks",
    "load_data": "tasks",
    "in_memory": "tasks",
    "StreamedImages": "stream",
    "default_test": "tasks",
    "augment_batch": "transforms",
    "pair_data": "pairs",
}

if TYPE_CHECKING:
    from partsbin.parts.data.pairs import pair_data
    from partsbin.parts.data.sources import DataMissing, Images, load_source
    from partsbin.parts.data.stream import StreamedImages
    from partsbin.parts.data.tasks import TaskData, default_test, in_memory, load_data, load_raw, load_split, load_task
    from partsbin.parts.data.transforms import augment_batch


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'partsbin.parts.data' has no attribute {name!r}")
    value = getattr(import_module(f"partsbin.parts.data.{module}"), name)
    globals()[name] = value
    return value
