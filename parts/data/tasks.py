"""A task's data: its training and test images, loaded from the specs that name them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from partsbin.parts.data.pairs import pair_data
from partsbin.parts.data.sources import Images, load_dataset, load_source
from partsbin.parts.data.spec import DataSpec
from partsbin.parts.data.transforms import prepare

if TYPE_CHECKING:
    from partsbin.parts.jobs.train import TaskSpec

__all__ = ["TaskData", "load_task", "load_raw", "load_split", "default_test"]


@dataclass
class TaskData:
    name: str
    train: Images
    test: Images
    train_spec: DataSpec
    test_spec: DataSpec

    @property
    def classes(self) -> list[str]:
        return self.train.classes


def load_raw(spec: DataSpec, split: str) -> Images:
    """The split ``spec`` names, whole: before its selections and transforms."""
    if spec.dataset is not None:
        return load_dataset(spec.dataset, split)
    assert spec.source is not None  # DataSpec's validator: a source or a dataset
    return load_source(spec.source, split, spec.path)


def load_split(spec: DataSpec, split: str) -> Images:
    return prepare(load_raw(spec, split), spec)


def default_test(data: DataSpec) -> DataSpec:
    """A task's test data when its spec names none: its data, read from the test split,
    without the index and size selections."""
    return data.model_copy(update={"indices": None, "limit": None})


def load_task(task: TaskSpec, test_limit: int | None = None) -> TaskData:
    if task.pair is not None:
        train_spec, test_spec = pair_data(task.pair, task.pair_task or "a")
    else:
        assert task.data is not None  # guaranteed by TaskSpec's validator
        train_spec = task.data
        test_spec = task.test or default_test(task.data)
    train = load_split(train_spec, "train")
    test = load_split(test_spec, "test")
    if test_limit is not None:
        test = test.subset(range(min(test_limit, len(test))))
    if train.classes != test.classes:
        raise ValueError(f"task {task.name}: train classes {train.classes} differ from test classes {test.classes}")
    return TaskData(task.name, train, test, train_spec, test_spec)
