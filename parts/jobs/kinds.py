"""Job kinds, each declared once: its spec model, its result model, its runner, its CLI
verb with the options it maps onto the spec, and a one-line summary.

This is the only list of kinds: the registry validates submissions against it, the
worker and ``--local`` runs find the runner through it, the CLI makes one verb per kind
from it, and ``partsbin train --schema`` prints its specs. The runner is named by its
import path so that the registry (which never imports the trainer) can hold the table.
Adding a kind is one :func:`register` call (docs/architecture.md, "Adding a job kind").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from partsbin.parts.errors import InvalidSpec
from partsbin.parts.jobs.spec import JobResult, JobSpec
from partsbin.parts.messages import describe_validation_error

__all__ = [
    "Option",
    "JobKind",
    "InvalidSpec",
    "register",
    "job_kind",
    "job_kinds",
    "parse_job_spec",
    "parse_job_result",
    "job_specs_schema",
]


@dataclass(frozen=True)
class Option:
    """One option of a kind's CLI verb, and the spec field it sets (a dotted path).

    ``parse`` names how the text becomes a value: ``data`` (a data spec, inline JSON or a
    YAML/JSON file), ``ints`` (``0,50,100``), ``ref-or-bool`` (``true``/``none`` or a ref);
    a flag (``type=bool``) sets ``value`` when given."""

    flags: tuple[str, ...]
    field: str
    help: str
    type: type = str
    required: bool = False
    parse: str | None = None
    value: Any = True
    metavar: str | None = None


@dataclass(frozen=True)
class JobKind:
    name: str
    spec: type[JobSpec]
    result: type[JobResult]
    #: ``module:function`` of the runner (``partsbin.trainer.adapt:run_adapt``).
    runner: str
    summary: str
    #: The CLI verb (``partsbin adapt``); None for kinds submitted only as a spec file or by the client.
    verb: str | None = None
    options: tuple[Option, ...] = field(default_factory=tuple)
    #: A small spec that validates and runs on built-in data (``partsbin train --example``).
    example: dict[str, Any] = field(default_factory=dict)

    def load_runner(self) -> Callable[..., JobResult]:
        module, _, function = self.runner.partition(":")
        fn: Callable[..., JobResult] = getattr(importlib.import_module(module), function)
        return fn


_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    if kind.name in _KINDS:
        raise ValueError(f"job kind {kind.name!r} is already registered")
    if kind.spec.kind_name() != kind.name:
        raise ValueError(f"job kind {kind.name!r}: its spec model says kind {kind.spec.kind_name()!r}")
    _KINDS[kind.name] = kind
    return kind


def _load_built_ins() -> None:
    # The built-in kinds register themselves on import.
    from partsbin.parts.jobs import builtin  # noqa: F401


def job_kinds() -> dict[str, JobKind]:
    _load_built_ins()
    return dict(_KINDS)


def job_kind(name: Any, where: str = "kind") -> JobKind:
    kinds = job_kinds()
    if not isinstance(name, str) or name not in kinds:
        raise InvalidSpec(f"{where}: unknown job kind {name!r}: expected one of {', '.join(sorted(kinds))}")
    return kinds[name]


def parse_job_spec(data: Any, *, data_roots: list[str] | tuple[str, ...] | None = None, where: str = "") -> Any:
    """The validated spec model of ``data``'s kind (``train`` when the spec gives none).

    ``data_roots``: the deployment's data roots, for a spec that came from outside (the
    registry at submission): every ``path`` must then lie under one of them. ``where``
    prefixes the fields' names in messages (``spec``: the request's field). Raises
    :class:`InvalidSpec` naming each bad field."""
    if isinstance(data, JobSpec):
        data = data.model_dump(mode="json")
    if not isinstance(data, dict):
        raise InvalidSpec(f"{where or 'the job spec'}: a job spec is a JSON object (a mapping)")
    kind = job_kind(data.get("kind", "train"), f"{where}.kind" if where else "kind")
    context = {"data_roots": list(data_roots)} if data_roots is not None else None
    try:
        return kind.spec.model_validate(data, context=context)
    except ValidationError as exc:
        raise InvalidSpec(describe_validation_error(exc, where)) from None


def parse_job_result(kind: str, data: Any) -> JobResult:
    """A job's result as its kind's model (what ``Job.result`` answers)."""
    try:
        return job_kind(kind).result.model_validate(data)
    except ValidationError as exc:
        raise InvalidSpec(f"the {kind} job's result does not validate: {describe_validation_error(exc)}") from None


def job_specs_schema() -> dict[str, Any]:
    """JSON Schema of every kind (``partsbin train --schema``)."""
    kinds = job_kinds()
    return {"title": "partsbin job spec", "oneOf": [k.spec.model_json_schema() for k in kinds.values()]}
