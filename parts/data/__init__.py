"""Data for training and evaluation: loaders, selections, domain shifts, named pairs."""

from __future__ import annotations

from dataclasses import dataclass

from partsbin.parts.data.pairs import pair_data
from partsbin.parts.data.sources import DataMissing, Images, load_source
from partsbin.parts.data.transforms import augment_batch, prepare
from partsbin.parts.training_spec import DataSpec, TaskSpec

__all__ = ["Images", "DataMissing", "TaskData", "load_task", "load_split", "augment_batch", "pair_data"]


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


def load_split(spec: DataSpec, split: str) -> Images:
    return prepare(load_source(spec.source, split, spec.path), spec)


def load_task(task: TaskSpec) -> TaskData:
    if task.pair is not None:
        train_spec, test_spec = pair_data(task.pair, task.pair_task or "a")
    else:
        assert task.train is not None  # guaranteed by TaskSpec's validator
        train_spec = task.train
        test_spec = task.test or task.train.model_copy(update={"indices": None, "limit": None})
    train = load_split(train_spec, "train")
    test = load_split(test_spec, "test")
    if task.test_limit is not None:
        test = test.subset(range(min(task.test_limit, len(test))))
    if train.classes != test.classes:
        raise ValueError(f"task {task.name}: train classes {train.classes} differ from test classes {test.classes}")
    return TaskData(task.name, train, test, train_spec, test_spec)
