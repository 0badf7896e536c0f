"""Evaluations: measured recombinations posted by the client's benchmark or a worker."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from partsbin.registry.db.models import Component, Evaluation

__all__ = ["create_evaluation", "list_evaluations", "best_evaluations"]


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


def list_evaluations(
    session: Session, *, extractor_id: int | None, head_id: int | None, limit: int = 1000
) -> list[Evaluation]:
    q = sa.select(Evaluation)
    if extractor_id is not None:
        q = q.where(Evaluation.extractor_id == extractor_id)
    if head_id is not None:
        q = q.where(Evaluation.head_id == head_id)
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
