"""Job specs by kind: what the registry validates at submission and the worker runs.

Every job spec has a ``kind`` (``train`` when left out, so the specs written before there
were kinds stay valid), a ``name`` and the ``namespace`` it publishes into (what a token
must be allowed). The trainer maps each kind to the function that runs it
(:mod:`partsbin.trainer.jobs`). A new kind adds its model to :data:`JOB_KINDS`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from partsbin.parts.application_specs import AdaptSpec, TransferSpec
from partsbin.parts.evaluation_spec import EvaluateSpec
from partsbin.parts.fct_spec import FCTSpec
from partsbin.parts.shared_head_spec import MultiArchSpec, UpdateHeadSpec
from partsbin.parts.stitch_spec import StitchSpec
from partsbin.parts.training_spec import TrainSpec

__all__ = ["JOB_KINDS", "UnknownJobKind", "parse_job_spec", "job_specs_schema"]

JOB_KINDS: dict[str, type[BaseModel]] = {
    "train": TrainSpec,
    "evaluate": EvaluateSpec,
    "train-multiarch": MultiArchSpec,
    "update-head": UpdateHeadSpec,
    "adapt": AdaptSpec,
    "transfer": TransferSpec,
    "stitch": StitchSpec,
    "fct": FCTSpec,
}


class UnknownJobKind(ValueError):
    pass


def parse_job_spec(data: Any) -> Any:
    """The validated spec model for ``data``'s kind. Raises :class:`UnknownJobKind` or
    pydantic's ``ValidationError`` (which names the bad field)."""
    if not isinstance(data, dict):
        raise UnknownJobKind("a job spec is a JSON object (a mapping)")
    kind = data.get("kind", "train")
    model = JOB_KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise UnknownJobKind(f"unknown job kind {kind!r}: expected one of {', '.join(sorted(JOB_KINDS))}")
    return model.model_validate(data)


def job_specs_schema() -> dict[str, Any]:
    """JSON Schema of every kind (``partsbin train --schema``)."""
    return {"title": "partsbin job spec", "oneOf": [m.model_json_schema() for m in JOB_KINDS.values()]}
