"""Reading and writing registered datasets (``/datasets``)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from partsbin.parts.datasets import DataCard, DatasetFacts
from partsbin.parts.names import Ref
from partsbin.registry.crud.components import Page, _lock_name
from partsbin.registry.db.models import Dataset
from partsbin.registry.errors import Conflict, NotFound

__all__ = ["create_dataset", "resolve_dataset", "list_datasets", "list_dataset_versions"]

_BY_NAME = sa.select(Dataset).where(Dataset.namespace == sa.bindparam("ns"), Dataset.name == sa.bindparam("name"))


def create_dataset(
    *, session: Session, card: DataCard, facts: DatasetFacts, digest: str, size: int, published_by: int | None
) -> tuple[Dataset, bool]:
    """Insert the next version of ``card.name``; identical bytes under the same name
    return the existing version. The caller has stored the blob already."""
    ns, name = card.name.split("/", 1)
    _lock_name(session, ns, f"dataset:{name}")
    same = _BY_NAME.where(Dataset.digest == sa.bindparam("digest"))
    existing = session.scalars(same, {"ns": ns, "name": name, "digest": digest}).first()
    if existing is not None:
        return existing, False
    stored = card.model_copy(update={"facts": facts}).model_dump(mode="json")
    for _attempt in range(5):
        latest = session.scalar(
            sa.select(sa.func.max(Dataset.version)).where(Dataset.namespace == ns, Dataset.name == name)
        )
        row = Dataset(
            namespace=ns,
            name=name,
            version=(latest or 0) + 1,
            digest=digest,
            size=size,
            format=facts.format,
            card=stored,
            published_by=published_by,
        )
        try:
            with session.begin_nested():
                session.add(row)
                session.flush()
        except IntegrityError:
            existing = session.scalars(same, {"ns": ns, "name": name, "digest": digest}).first()
            if existing is not None:
                return existing, False
            continue
        return row, True
    raise Conflict(f"could not assign a version to dataset {card.name}: other uploads kept taking it; try again")


def resolve_dataset(session: Session, ref: Ref) -> Dataset:
    """The dataset a ref names: ``ns/name`` (the latest), ``ns/name@v`` or ``sha256:...``."""
    if ref.kind == "digest":
        found = session.scalars(sa.select(Dataset).where(Dataset.digest == ref.digest).order_by(Dataset.id)).first()
        if found is None:
            raise NotFound(f"no dataset with digest sha256:{ref.digest}")
        return found
    names = {"ns": ref.namespace, "name": ref.name}
    if ref.kind == "version":
        found = session.scalars(_BY_NAME.where(Dataset.version == ref.version), names).first()
        if found is None:
            raise NotFound(f"dataset {ref.full_name} has no version {ref.version}")
        return found
    if ref.kind == "alias":
        raise NotFound(f"datasets have no aliases: name a version ({ref.full_name}@1) or the latest ({ref.full_name})")
    found = session.scalars(_BY_NAME.order_by(Dataset.version.desc()).limit(1), names).first()
    if found is None:
        raise NotFound(f"no dataset {ref.full_name}")
    return found


def list_datasets(session: Session, *, namespace: str | None, cursor: int | None, limit: int) -> Page:
    q = sa.select(Dataset)
    if namespace:
        q = q.where(Dataset.namespace == namespace)
    if cursor is not None:
        q = q.where(Dataset.id > cursor)
    rows = list(session.scalars(q.order_by(Dataset.id).limit(limit + 1)))
    return Page(rows[:limit], str(rows[limit - 1].id) if len(rows) > limit else None)  # type: ignore[arg-type]


def list_dataset_versions(session: Session, namespace: str, name: str) -> list[Dataset]:
    rows = list(session.scalars(_BY_NAME.order_by(Dataset.version), {"ns": namespace, "name": name}))
    if not rows:
        raise NotFound(f"no dataset {namespace}/{name}")
    return rows
