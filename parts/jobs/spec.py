"""What every job spec and every job result has in common.

A spec is ``kind``, ``name``, ``namespace``, the kind's own fields, ``settings`` (the one
:class:`~partsbin.parts.jobs.settings.Settings` model, restricted to the fields the kind
reads) and ``publish``; data fields are ``data`` and ``test`` in every kind. A result is
what the worker reports when the job ends: the refs it published, how the training
went, and the kind's own figures, with :meth:`JobResult.summary` saying them to a person.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from partsbin.parts.data.spec import DataSpec
from partsbin.parts.jobs.settings import SETTINGS_FIELDS, Settings
from partsbin.parts.names import InvalidName, parse_ref
from partsbin.parts.spec_fields import PartName

if TYPE_CHECKING:
    from partsbin.parts.jobs.limits import JobCost

__all__ = ["JobSpec", "JobResult", "TrainStats", "percent", "duration", "compact", "progress_line"]


def _short_name(ref: str, suffix: str) -> str:
    short = ref.partition("/")[2].split("@")[0].split(":")[0] or "part"
    return (short.removesuffix("-extractor") + suffix)[:64]


class JobSpec(BaseModel):
    """The fields every kind shares. A kind subclasses it, sets ``kind`` to a literal, and
    says which settings it reads (:attr:`settings_used`) with its own defaults."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    name: PartName = Field(description="the job's name; what it publishes is named after it")
    namespace: PartName = Field(description="the namespace it publishes into (what the token must be allowed)")
    settings: Settings = Field(
        default_factory=dict,  # validated into Settings with the kind's defaults
        validate_default=True,
        description="optimiser, schedule, batches, device, evaluation and the job's time limit",
    )
    publish: bool = Field(default=True, description="publish what the job makes (and post what it measures)")

    #: The settings fields this kind reads; any other is refused, naming the kind.
    settings_used: ClassVar[frozenset[str]] = SETTINGS_FIELDS
    #: This kind's defaults where they differ from :class:`Settings`' own.
    settings_defaults: ClassVar[dict[str, Any]] = {}
    #: ``(field, suffix)``: with no ``name``, the job is named after that ref's name plus
    #: the suffix, and with no ``namespace`` it takes that ref's namespace.
    named_after: ClassVar[tuple[str, str] | None] = None

    @classmethod
    def kind_name(cls) -> str:
        return str(cls.model_fields["kind"].default)

    @model_validator(mode="before")
    @classmethod
    def _default_names(cls, data: Any) -> Any:
        if not isinstance(data, dict) or cls.named_after is None:
            return data
        field, suffix = cls.named_after
        ref = data.get(field)
        if not isinstance(ref, str):
            return data
        try:
            parsed = parse_ref(ref)
        except InvalidName:
            return data  # the field's own validator names the problem
        data = dict(data)
        if data.get("name") is None and parsed.kind != "digest":
            data["name"] = _short_name(ref, suffix)
        if data.get("namespace") is None and parsed.kind != "digest":
            data["namespace"] = parsed.namespace
        return data

    @field_validator("settings", mode="before")
    @classmethod
    def _kind_settings(cls, v: Any) -> Any:
        if v is None:
            v = {}
        if isinstance(v, Settings):
            v = {k: getattr(v, k) for k in v.model_fields_set}
        if not isinstance(v, dict):
            return v  # pydantic names the type error
        unused = sorted(set(v) - cls.settings_used)
        if unused:
            names = ", ".join(f"settings.{k}" for k in unused)
            raise ValueError(
                f"{names} {'is' if len(unused) == 1 else 'are'} not used by {cls.kind_name()} jobs: leave "
                f"{'it' if len(unused) == 1 else 'them'} out (they use {', '.join(sorted(cls.settings_used))})"
            )
        return {**cls.settings_defaults, **v}

    @field_serializer("settings")
    def _dump_settings(self, settings: Settings, info: SerializationInfo) -> dict[str, Any]:
        # Only what the kind reads: a stored spec validates again when a worker runs it,
        # and a person reading it sees no field that does nothing.
        dumped = settings.model_dump(mode=info.mode, exclude_none=bool(info.exclude_none))
        return {k: v for k, v in dumped.items() if k in self.settings_used}

    def cost(self) -> JobCost:
        """What the job may cost, from the spec alone (kinds that build networks add theirs)."""
        from partsbin.parts.jobs.limits import JobCost

        return JobCost.of(self)

    def data_specs(self) -> Iterator[tuple[str, DataSpec]]:
        """Every data spec in this spec, with where it is (``tasks[0].data``)."""
        yield from _walk(self, "")

    def compact(self) -> dict[str, Any]:
        """The spec as people read it: JSON types, no nulls, nothing left at an empty default."""
        return compact(self.model_dump(mode="json", exclude_none=True))


def _walk(value: Any, where: str) -> Iterator[tuple[str, DataSpec]]:
    if isinstance(value, DataSpec):
        yield where, value
    elif isinstance(value, BaseModel):
        for key in type(value).model_fields:
            yield from _walk(getattr(value, key), f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{where}[{i}]")


def compact(value: Any) -> Any:
    """JSON as people read it: no nulls, no empty lists. An empty mapping stays: it can
    differ from its default (an arch's ``config: {}`` against ``{"depth": 20}``), and what
    people copy from a job's page must validate as the same spec."""
    if isinstance(value, dict):
        out = {k: compact(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in out.items() if v != []}
    if isinstance(value, list):
        return [compact(v) for v in value]
    return value


def progress_line(p: dict[str, Any]) -> str:
    """Where a job is, in its spec's terms: "network 1 of 2 (task a), step 20 of 150, loss 0.532"."""
    if not p:
        return ""
    parts: list[str] = []
    phase = p.get("phase")
    if phase and phase != "training":
        parts.append(str(phase))
    networks = p.get("networks") or 1
    if networks > 1:
        task = f" ({p['task']})" if p.get("task") else ""
        parts.append(f"network {p.get('network')} of {networks}{task}")
    if p.get("steps") is not None and p.get("step") is not None:
        parts.append(f"step {p['step']:,} of {p['steps']:,}")
    elif p.get("step") is not None and p.get("total") is not None:  # reported by older workers
        parts.append(f"step {p['step']:,} of {p['total']:,}")
    if isinstance(p.get("loss"), (int, float)):
        parts.append(f"loss {p['loss']:.3f}")
    if p.get("images_per_s"):
        parts.append(f"{p['images_per_s']:,.0f} images/s")
    if p.get("final"):
        parts.append("finished")
    return ", ".join(parts)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainStats(_Result):
    """How the training loop went (:func:`partsbin.trainer.loop.fit`)."""

    steps: int = Field(ge=0, description="optimiser steps, over every network")
    seconds: float = Field(ge=0)
    images_per_s: float = Field(ge=0)
    final_loss: float | None = None
    threads: int | None = None
    device: str | None = None
    distributed: dict[str, Any] | None = None

    @field_validator("final_loss", mode="before")
    @classmethod
    def _nan(cls, v: Any) -> Any:
        return _finite(v) if isinstance(v, float) else v

    def line(self) -> str:
        loss = "" if self.final_loss is None else f", final loss {self.final_loss:.3f}"
        return f"trained {self.steps:,} steps in {duration(self.seconds)} ({self.images_per_s:,.0f} images/s{loss})"


class JobResult(_Result):
    """What every job reports when it ends. Kinds add their figures and their summary."""

    kind: str
    refs: list[str] = Field(default_factory=list, max_length=1000, description="what the job published")
    seconds: float | None = Field(default=None, ge=0, description="wall time of the whole job")
    train: TrainStats | None = None

    def summary(self) -> list[str]:
        """Lines for people: the kind's figures, then what was published."""
        lines = self.figures()
        if self.train is not None:
            lines.append(self.train.line())
        lines += [f"published {ref}" for ref in self.refs]
        return lines

    def figures(self) -> list[str]:
        return []
