"""The registry measures what it stores: when a component joins a group, the pairs it makes
there are queued as ``evaluate`` jobs for the workers, so a group's heatmap fills itself.

- A new extractor is paired with the task heads of its groups, a new head with the
  extractors; only pairs whose feature interfaces meet, whose extractor's card records a
  test set (a worker must rebuild it), and that were neither measured on that test set by
  a trusted poster nor asked for before (one :class:`EvaluationRequest` per pair, ever).
- At most ``auto_evaluate_pairs`` pairs per new component, ``auto_evaluate_heads_per_job``
  heads per job (an extractor's features are computed once per job).
- The jobs' origin is ``registry``: their evaluations are the registry's own (trust
  ``worker``, crud/evaluations.py).

``PARTSBIN_AUTO_EVALUATE=auto`` (the default) queues only while a worker has been heard
from lately: a registry nobody works for would fill its queue with jobs no one runs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from partsbin.parts.jobs import InvalidSpec, parse_job_spec
from partsbin.registry.crud.evaluations import TRUSTED, recorded_test_digest
from partsbin.registry.crud.jobs import submit_job
from partsbin.registry.db.models import Component, Evaluation, EvaluationRequest, Job, Membership, Worker, utcnow

__all__ = ["queue_evaluations", "queued_in_group", "WORKER_RECENT"]

#: A worker heard from within this long counts as one that will run what is queued.
WORKER_RECENT = timedelta(minutes=15)


def _enabled(session: Session, mode: str) -> bool:
    if mode == "off":
        return False
    if mode == "on":
        return True
    recent = session.scalar(
        sa.select(sa.func.count()).select_from(Worker).where(Worker.last_seen_at >= utcnow() - WORKER_RECENT)
    )
    return bool(recent)


def _meets(ext: Membership, head: Membership) -> bool:
    return (ext.junction_channels, ext.junction_layout) == (head.junction_channels, head.junction_layout) and (
        head.junction_spatial is None or head.junction_spatial == ext.junction_spatial
    )


def queue_evaluations(session: Session, component: Component, settings: Any) -> int:
    """Queue the new pairs ``component`` makes in its groups; returns how many. The
    caller commits (with the component's row, or right after it)."""
    if component.role not in ("extractor", "head") or component.yanked_at is not None:
        return 0
    if not _enabled(session, settings.auto_evaluate):
        return 0
    mine = {m.anchor_digest: m for m in component.memberships}
    if not mine:
        return 0
    other = "head" if component.role == "extractor" else "extractor"
    partners = session.execute(
        sa.select(Membership, Component)
        .join(Component, Component.id == Membership.component_id)
        .where(
            Membership.anchor_digest.in_(list(mine)),
            Membership.role == other,
            Component.yanked_at.is_(None),
            Component.id != component.id,
        )
        .order_by(Component.id)
        .limit(settings.auto_evaluate_pairs * 4)
    ).all()
    pairs: dict[tuple[int, int], tuple[Component, Component]] = {}
    for membership, partner in partners:
        own = mine[membership.anchor_digest]
        ext, head = (component, partner) if other == "head" else (partner, component)
        ext_m, head_m = (own, membership) if other == "head" else (membership, own)
        if _meets(ext_m, head_m) and recorded_test_digest(ext) is not None:
            pairs[(ext.id, head.id)] = (ext, head)
    if not pairs:
        return 0
    ids = list(pairs)
    asked = set(
        session.execute(
            sa.select(EvaluationRequest.extractor_id, EvaluationRequest.head_id).where(
                sa.tuple_(EvaluationRequest.extractor_id, EvaluationRequest.head_id).in_(ids)
            )
        ).all()
    )
    measured = set(
        session.execute(
            sa.select(Evaluation.extractor_id, Evaluation.head_id).where(
                sa.tuple_(Evaluation.extractor_id, Evaluation.head_id).in_(ids),
                Evaluation.own_test.is_(True),
                Evaluation.trust.in_(TRUSTED),
            )
        ).all()
    )
    todo = [pairs[p] for p in ids if p not in asked and p not in measured][: settings.auto_evaluate_pairs]
    by_extractor: dict[int, tuple[Component, list[Component]]] = {}
    for ext, head in todo:
        by_extractor.setdefault(ext.id, (ext, []))[1].append(head)
    queued = 0
    for ext, heads in by_extractor.values():
        size = settings.auto_evaluate_heads_per_job
        for start in range(0, len(heads), size):
            chunk = heads[start : start + size]
            job = _submit(session, ext, chunk, settings)
            if job is None:
                continue
            session.add_all(EvaluationRequest(extractor_id=ext.id, head_id=h.id, job_id=job.id) for h in chunk)
            queued += len(chunk)
    session.flush()
    return queued


def _submit(session: Session, ext: Component, heads: list[Component], settings: Any) -> Job | None:
    raw = {
        "kind": "evaluate",
        "name": f"auto-{ext.name}"[:64],
        "namespace": ext.namespace,
        "extractor": ext.ref,
        "heads": [h.ref for h in heads],
        "settings": {"max_seconds": min(3600.0, settings.max_job_seconds)},
    }
    try:
        spec = parse_job_spec(raw)
    except InvalidSpec:
        return None  # a name the spec refuses: this pair is simply not asked for
    job = submit_job(session=session, spec=spec.model_dump(mode="json"), namespace=ext.namespace, submitted_by=None)
    job.origin = "registry"
    return job


def queued_in_group(session: Session, anchor_digest: str) -> int:
    """Pairs of the group whose evaluation the registry has queued and not yet measured."""
    members = sa.select(Membership.component_id).where(Membership.anchor_digest == anchor_digest)
    return int(
        session.scalar(
            sa.select(sa.func.count())
            .select_from(EvaluationRequest)
            .join(Job, Job.id == EvaluationRequest.job_id)
            .where(EvaluationRequest.extractor_id.in_(members), Job.status.in_(("queued", "running")))
        )
        or 0
    )
