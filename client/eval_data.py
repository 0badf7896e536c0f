"""The test data a benchmark measures an extractor on: its task's test set, rebuilt from
its card, or from a local copy given with ``data=``, checked against the content digest
the card records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from partsbin.client.errors import UsageError
from partsbin.parts.data.spec import RECORDED_TEST_EXTRAS

if TYPE_CHECKING:
    from partsbin.client.component import Component
    from partsbin.parts.data import Images, StreamedImages

__all__ = ["given_for", "recorded_test_spec", "test_set"]


def _task_of(comp: Component) -> str:
    ds = comp.card.provenance.dataset
    return str(getattr(ds, "task", "") or "") if ds is not None else ""


def test_set(comp: Component, given: Any = None) -> tuple[str, Images | StreamedImages]:
    """The extractor's task test set: rebuilt from its card (trainer-published cards record
    it under ``provenance.dataset.test``), or from ``given``: a path to a local copy of the
    recorded data (checked against the recorded content digest), or a whole data spec.
    A spec that says ``stream`` gives a streamed test set, decoded batch by batch."""
    from partsbin.parts.data import DataMissing, load_data
    from partsbin.parts.data.spec import DataSpec

    task = _task_of(comp)
    ds = comp.card.provenance.dataset
    recorded = getattr(ds, "test", None) if ds is not None else None
    how = f"--data {task or comp.name}=PATH (data={{{(task or comp.name)!r}: PATH}} in Python)"
    digest, limit = None, None
    if isinstance(given, (DataSpec, dict)):
        spec = given if isinstance(given, DataSpec) else _data_spec(given, f"the test data given for {comp.ref}")
    elif recorded is None:
        raise UsageError(
            f"{comp.ref}'s card does not say how to rebuild its test set; give the data with --data "
            f"{comp.name}=SPEC.json (data={{{comp.name!r}: DataSpec(...)}} in Python)"
        )
    else:
        # Read, never pop: the dict belongs to the component's card.
        spec = _data_spec({k: v for k, v in recorded.items() if k not in _NOT_SPEC}, f"{comp.ref}'s recorded test set")
        digest, limit = recorded.get("source_digest"), recorded.get("test_limit")
        if given is not None:
            spec = spec.model_copy(update={"path": str(given)})
    try:
        images = load_data(spec, "test")
    except DataMissing as exc:
        raise DataMissing(
            f"the test data of {comp.ref} (task {task or '?'}) is missing: {exc}. Point at a copy with {how}"
        ) from None
    if digest and images.source_digest != digest:
        where = spec.path or f"the standard location of {spec.source}"
        raise UsageError(
            f"the data at {where} is not the data {comp.ref} was tested on (content {images.source_digest}, "
            f"recorded {digest}); point at the right copy with {how}"
        )
    if limit:
        images = images.subset(range(min(limit, len(images))))
    return f"{spec.source}:{task}:test", images


def _data_spec(value: Any, what: str) -> Any:
    """A data spec, or a :class:`UsageError` naming each bad field (never pydantic's error)."""
    from pydantic import ValidationError

    from partsbin.parts.data.spec import DataSpec
    from partsbin.parts.messages import describe_validation_error

    try:
        return DataSpec.model_validate(value)
    except ValidationError as exc:
        raise UsageError(f"{what} is not a data spec: {describe_validation_error(exc)}") from None


# Keys of a card's recorded test set that are not part of the data spec.
_NOT_SPEC = RECORDED_TEST_EXTRAS


def recorded_test_spec(comp: Component) -> Any:
    """The test set ``comp``'s card records, as a data spec (its ``test_limit`` as ``limit``).

    ``partsbin bench --head-task`` measures every extractor on its head's task this way:
    an updated head (``update-head``) records the new task, with all of its classes, while
    each extractor's card records the task it was trained on."""

    ds = comp.card.provenance.dataset
    recorded = getattr(ds, "test", None) if ds is not None else None
    if not isinstance(recorded, dict):
        raise UsageError(f"{comp.ref}'s card does not record a test set (provenance.dataset.test)")
    spec = _data_spec({k: v for k, v in recorded.items() if k not in _NOT_SPEC}, f"{comp.ref}'s recorded test set")
    limit = recorded.get("test_limit")
    return spec.model_copy(update={"limit": limit}) if limit else spec


def given_for(data: dict[str, Any] | None, comp: Component) -> Any:
    """What ``data`` says for this extractor: by ref, by name, or by its task's name."""
    if not data:
        return None
    for key in (comp.ref, comp.name, _task_of(comp)):
        if key and key in data:
            return data[key]
    return None
