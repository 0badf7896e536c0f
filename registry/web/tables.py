"""Rows the pages show that join several tables: evaluations with their components."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from partsbin.parts.metrics import wilson_interval
from partsbin.registry.db.models import Component, Evaluation

__all__ = ["EvaluationRow", "evaluation_rows", "interval"]


@dataclass
class EvaluationRow:
    ev: Evaluation
    extractor: Component
    head: Component
    ci95: tuple[float, float] | None


def interval(ev: Evaluation) -> tuple[float, float] | None:
    """95% Wilson interval of an accuracy measured on ``samples`` images; None for other metrics."""
    if not ev.metric.endswith("accuracy") or not 0.0 <= ev.value <= 1.0 or ev.samples < 1:
        return None
    return wilson_interval(round(ev.value * ev.samples), ev.samples)


def evaluation_rows(session: Session, evals: list[Evaluation]) -> list[EvaluationRow]:
    ids = {e.extractor_id for e in evals} | {e.head_id for e in evals}
    comps = {c.id: c for c in session.scalars(sa.select(Component).where(Component.id.in_(ids)))} if ids else {}
    return [EvaluationRow(e, comps[e.extractor_id], comps[e.head_id], interval(e)) for e in evals]
