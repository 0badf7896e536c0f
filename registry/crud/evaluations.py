"""Evaluations: measured recombinations posted by the client's benchmark or a worker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from partsbin.registry.db.models import Component, Evaluation
from partsbin.registry.errors import NotFound

__all__ = [
    "create_evaluation",
    "get_evaluation",
    "list_evaluations",
    "best_evaluations",
    "Cell",
    "best_evaluation_grid",
]


def create_evaluation(
    *,
    session: Session,
    extractor: Component,
    head: Component,
    dataset: str,
    metric: str,
    value: float,
    samples: int,
    bn_mode: str,
    batch_size: int | None,
    details: dict[str, Any],
    created_by: int | None,
) -> Evaluation:
    row = Evaluation(
        extractor_id=extractor.id,
        head_id=head.id,
        dataset=dataset,
        metric=metric,
        value=value,
        samples=samples,
        bn_mode=bn_mode,
        batch_size=batch_size,
        details=details,
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    return row


def get_evaluation(session: Session, evaluation_id: int) -> Evaluation:
    row = session.get(Evaluation, evaluation_id)
    if row is None:
        raise NotFound(f"no evaluation {evaluation_id}")
    return row


def list_evaluations(
    session: Session,
    *,
    extractor_id: int | None,
    head_id: int | None,
    after: int | None = None,
    limit: int = 1000,
    either: bool = False,
) -> list[Evaluation]:
    """Evaluations of a pair, an extractor or a head, oldest first, from after id ``after``.
    ``either``: of a component on either side (``extractor_id == head_id``)."""
    q = sa.select(Evaluation)
    if either:
        q = q.where(sa.or_(Evaluation.extractor_id == extractor_id, Evaluation.head_id == head_id))
    else:
        if extractor_id is not None:
            q = q.where(Evaluation.extractor_id == extractor_id)
        if head_id is not None:
            q = q.where(Evaluation.head_id == head_id)
    if after is not None:
        q = q.where(Evaluation.id > after)
    return list(session.scalars(q.order_by(Evaluation.id).limit(limit)))


def _best_statement(target_is_head: bool) -> sa.Select:
    mine = Evaluation.head_id if target_is_head else Evaluation.extractor_id
    return (
        sa.select(Evaluation)
        .where(
            mine == sa.bindparam("target_id"),
            Evaluation.bn_mode == "batch",
            Evaluation.metric == "recombination_accuracy",
        )
        .order_by(Evaluation.samples, Evaluation.id)
    )


# Built once: /compatible runs this on every request (see crud.compatible).
_BEST = {True: _best_statement(True), False: _best_statement(False)}


def best_evaluations(session: Session, target: Component, *, target_is_head: bool) -> dict[int, Evaluation]:
    """For each component measured with ``target``: its evaluation with the most samples
    in batch-statistics mode (docs/architecture.md), the latest on a tie."""
    other = "extractor_id" if target_is_head else "head_id"
    best: dict[int, Evaluation] = {}
    for ev in session.scalars(
        _BEST[target_is_head], {"target_id": target.id}
    ):  # ascending: the last one kept per component is the best
        best[getattr(ev, other)] = ev
    return best


@dataclass(frozen=True)
class Cell:
    """The evaluation that stands for a pair in a matrix: what a heatmap cell shows."""

    id: int
    value: float
    samples: int
    dataset: str


def best_evaluation_grid(
    session: Session, extractor_ids: list[int], head_ids: list[int]
) -> dict[tuple[int, int], Cell]:
    """For each measured (extractor, head) pair: the evaluation that ``/compatible`` ranks
    by (batch statistics, recombination accuracy, most samples, the latest on a tie).

    Plain columns rather than ORM objects, and no timestamp: a 50 x 50 group page loads
    2,500 rows, and parsing SQLite's datetime text alone took 25 ms of them (the
    evaluation's page has its date).
    """
    if not extractor_ids or not head_ids:
        return {}
    rows = session.execute(
        sa.select(
            Evaluation.extractor_id,
            Evaluation.head_id,
            Evaluation.id,
            Evaluation.value,
            Evaluation.samples,
            Evaluation.dataset,
        )
        .where(
            Evaluation.extractor_id.in_(extractor_ids),
            Evaluation.head_id.in_(head_ids),
            Evaluation.bn_mode == "batch",
            Evaluation.metric == "recombination_accuracy",
        )
        .order_by(Evaluation.samples, Evaluation.id)
    )
    grid: dict[tuple[int, int], Cell] = {}
    for ext, head, eid, value, samples, dataset in rows:  # ascending: the last one kept per pair is the best
        grid[(ext, head)] = Cell(eid, value, samples, dataset)
    return grid
