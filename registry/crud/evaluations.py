"""Evaluations: measured recombinations posted by the client's benchmark or a worker.

Who may vouch for a measurement (docs/architecture.md, "/compatible ranking"): any
publish token may post one, but only these rank ``/compatible``:

- ``admin``: posted with an admin token;
- ``owner``: posted with an owner token of every namespace the pair lives in;
- ``worker``: posted under the lease of a running job that such a token (admin, or an
  owner of the pair's namespaces) submitted, i.e. measured by the registry's own workers.

Everything else is ``third-party``: kept, listed and shown as such, never ranked on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from partsbin.parts.metrics import wilson_interval
from partsbin.registry.crud.tokens import Principal
from partsbin.registry.db.models import Component, Evaluation, Job, Token
from partsbin.registry.errors import NotFound
from partsbin.registry.webhooks import events

__all__ = [
    "TRUSTED",
    "create_evaluation",
    "list_evaluations",
    "best_evaluations",
    "trust_of",
    "chance_level",
    "at_chance",
    "get_evaluation",
    "Cell",
    "best_evaluation_grid",
    "recorded_test_digest",
    "other_data",
]

TRUSTED = ("admin", "owner", "worker")


def _vouches(scope: str, owner: bool, namespaces: set[str] | tuple[str, ...], pair: set[str]) -> bool:
    return scope == "admin" or (scope == "publish" and owner and pair <= set(namespaces))


def trust_of(session: Session, principal: Principal, extractor: Component, head: Component, job: Job | None) -> str:
    pair = {extractor.namespace, head.namespace}
    if principal.scope == "admin":
        return "admin"
    if _vouches(principal.scope, principal.owner, principal.namespaces, pair):
        return "owner"
    if job is not None and job.origin == "registry":
        return "worker"  # a pair the registry itself asked its workers to measure
    if job is not None and job.submitted_by is not None:
        submitter = session.get(Token, job.submitted_by)
        if (
            submitter is not None
            and submitter.revoked_at is None
            and _vouches(submitter.scope, submitter.owner, tuple(submitter.namespaces or ()), pair)
        ):
            return "worker"
    return "third-party"


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
    trust: str = "third-party",
    job_id: int | None = None,
    classes: int | None = None,
    data_digest: str | None = None,
) -> Evaluation:
    row = Evaluation(
        data_digest=data_digest,
        own_test=data_digest is not None and data_digest == recorded_test_digest(extractor),
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
        trust=trust,
        job_id=job_id,
        classes=classes,
    )
    session.add(row)
    session.flush()
    events.evaluation_recorded(session, row, extractor, head)
    return row


def recorded_test_digest(extractor: Component) -> str | None:
    """The content digest of the test images the extractor's card records (trainer-published
    cards: ``provenance.dataset.test.data_digest``)."""
    test = (((extractor.card.get("provenance") or {}).get("dataset") or {}).get("test")) or {}
    digest = test.get("data_digest") if isinstance(test, dict) else None
    return digest if isinstance(digest, str) else None


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


def chance_level(ev: Evaluation, head: Component) -> float:
    """1 / the number of classes the prediction was over (the head's, if not posted)."""
    labels = ((head.card.get("interface") or {}).get("output") or {}).get("labels") or []
    classes = ev.classes or len(labels) or 1
    return 1.0 / classes


def at_chance(ev: Evaluation, head: Component) -> bool:
    """The 95% interval of the accuracy reaches down to chance level (or the whole of it
    lies below): measured, and not compatible."""
    low, _ = wilson_interval(round(ev.value * ev.samples), ev.samples)
    return low <= chance_level(ev, head)


def _best_statement(target_is_head: bool) -> sa.Select:
    mine = Evaluation.head_id if target_is_head else Evaluation.extractor_id
    return (
        sa.select(Evaluation)
        .where(
            mine == sa.bindparam("target_id"),
            Evaluation.bn_mode == "batch",
            Evaluation.metric == "recombination_accuracy",
            Evaluation.own_test.is_(True),
        )
        .order_by(Evaluation.samples, Evaluation.id)
    )


# Built once: /compatible runs this on every request (see crud.compatible).
_BEST = {True: _best_statement(True), False: _best_statement(False)}


def best_evaluations(
    session: Session, target: Component, *, target_is_head: bool
) -> tuple[dict[int, Evaluation], dict[int, Evaluation]]:
    """For each component measured with ``target``: its trusted evaluation with the most
    samples in batch-statistics mode (docs/architecture.md), the latest on a tie; and,
    separately, the same among third-party evaluations."""
    other = "extractor_id" if target_is_head else "head_id"
    trusted: dict[int, Evaluation] = {}
    third: dict[int, Evaluation] = {}
    for ev in session.scalars(
        _BEST[target_is_head], {"target_id": target.id}
    ):  # ascending: the last one kept per component is the best
        (trusted if ev.trust in TRUSTED else third)[getattr(ev, other)] = ev
    return trusted, third


@dataclass(frozen=True)
class Cell:
    """The evaluation that stands for a pair in a matrix: what a heatmap cell shows."""

    id: int
    value: float
    samples: int
    dataset: str


def best_evaluation_grid(
    session: Session, extractor_ids: list[int], head_ids: list[int], *, data_digest: str | None = None
) -> dict[tuple[int, int], Cell]:
    """For each measured (extractor, head) pair: the evaluation that ``/compatible`` ranks
    by (trusted, batch statistics, recombination accuracy on the extractor's own test set,
    most samples, the latest on a tie); with ``data_digest``, on that data instead.

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
            # The pair's recombination accuracy: on the extractor's own test set (or the data asked for).
            Evaluation.own_test.is_(True) if data_digest is None else Evaluation.data_digest == data_digest,
            # As /compatible ranks: third-party evaluations do not speak for a pair.
            Evaluation.trust.in_(TRUSTED),
        )
        .order_by(Evaluation.samples, Evaluation.id)
    )
    grid: dict[tuple[int, int], Cell] = {}
    for ext, head, eid, value, samples, dataset in rows:  # ascending: the last one kept per pair is the best
        grid[(ext, head)] = Cell(eid, value, samples, dataset)
    return grid


def other_data(session: Session, extractor_ids: list[int], head_ids: list[int]) -> list[tuple[str, str, int]]:
    """(data digest, a name it was posted under, pairs measured) of the data the pairs were
    measured on other than each extractor's own test set: what a heatmap can show instead."""
    if not extractor_ids or not head_ids:
        return []
    rows = session.execute(
        sa.select(Evaluation.data_digest, sa.func.min(Evaluation.dataset), sa.func.count(Evaluation.id))
        .where(
            Evaluation.extractor_id.in_(extractor_ids),
            Evaluation.head_id.in_(head_ids),
            Evaluation.own_test.is_(False),
            Evaluation.data_digest.is_not(None),
            Evaluation.bn_mode == "batch",
            Evaluation.trust.in_(TRUSTED),
        )
        .group_by(Evaluation.data_digest)
        .order_by(sa.func.count(Evaluation.id).desc())
        .limit(20)
    ).all()
    return [(str(d), str(name), int(n)) for d, name, n in rows]
