"""A task's data: its training and test images, loaded from the specs that name them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from partsbin.parts.data.pairs import pair_data
from partsbin.parts.data.sources import Images, load_dataset, load_source
from partsbin.parts.data.spec import DataSpec
from partsbin.parts.data.transforms import prepare

if TYPE_CHECKING:
    from partsbin.parts.data.stream import StreamedImages
    from partsbin.parts.jobs.train import TaskSpec

__all__ = ["TaskData", "load_task", "load_raw", "load_split", "load_data", "in_memory", "default_test"]


@dataclass
class TaskData:
    name: str
    #: Streamed when the spec says ``stream`` (the train kind and evaluations read them so).
    train: Images | StreamedImages
    test: Images | StreamedImages
    train_spec: DataSpec
    test_spec: DataSpec

    @property
    def classes(self) -> list[str]:
        return self.train.classes


def load_raw(spec: DataSpec, split: str) -> Images:
    """The split ``spec`` names, whole: before its selections and transforms."""
    if spec.stream is not None:
        from partsbin.parts.data.stream import NeedsImagesInMemory

        raise NeedsImagesInMemory(
            f"this job needs the whole split of {spec.label} in memory, and its data spec says 'stream': streamed "
            "data serves the train job and evaluations (bench, evaluate); leave 'stream' out for this kind"
        )
    if spec.dataset is not None:
        return load_dataset(spec.dataset, split)
    assert spec.source is not None  # DataSpec's validator: a source or a dataset
    return load_source(spec.source, split, spec.path)


def load_split(spec: DataSpec, split: str) -> Images:
    """The split ``spec`` names, selected and transformed, whole in memory."""
    return prepare(load_raw(spec, split), spec)


def load_data(spec: DataSpec, split: str) -> Images | StreamedImages:
    """:func:`load_split`, or with ``stream`` in the spec the split as a stream (its file
    list: :mod:`partsbin.parts.data.stream`)."""
    if spec.stream is not None:
        from partsbin.parts.data.stream import load_streamed

        return load_streamed(spec, split)
    return load_split(spec, split)


def in_memory(images: Images | StreamedImages) -> Images:
    """``images`` as one tensor, for the kinds that need it; streamed data is refused with
    a message saying so (:attr:`StreamedImages.x`)."""
    if isinstance(images, Images):
        return images
    return Images(images.x, images.y, images.classes)  # .x raises NeedsImagesInMemory


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
    train = load_data(train_spec, "train")
    test = load_data(test_spec, "test")
    if test_limit is not None:
        test = test.subset(range(min(test_limit, len(test))))
    if train.classes != test.classes:
        raise ValueError(f"task {task.name}: train classes {train.classes} differ from test classes {test.classes}")
    return TaskData(task.name, train, test, train_spec, test_spec)
