"""Keeping blobs and rows consistent while ``partsbin gc`` removes orphan blobs.

A blob is an orphan when no row references its digest (a crash between storing it and
committing the row leaves one). Removing it must not race an upload of the same bytes
that found the blob already stored and is about to commit a row pointing at it. The two
exclude each other through the database:

- an upload that created a row re-checks the blob *after* writing the row and before
  committing it (:func:`ensure_blob`); on PostgreSQL under a shared advisory lock on the
  digest, on SQLite under the write lock its insert already holds;
- gc re-checks that no row references the digest and deletes the blob under the
  exclusive form of that lock (:func:`delete_if_orphan`): PostgreSQL's advisory lock, or
  SQLite's write lock (``BEGIN IMMEDIATE``).

Whichever comes second sees what the first did: the upload puts the bytes back, or gc
sees the row and keeps the blob.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from partsbin.registry.db.models import Component, Dataset
from partsbin.registry.storage import BlobStorage

__all__ = ["ensure_blob", "delete_if_orphan", "referenced"]


def _key(digest: str) -> sa.ColumnElement[int]:
    return sa.func.hashtextextended("partsbin-blob:" + digest, 0)


def ensure_blob(session: Session, storage: BlobStorage, digest: str, restore: Callable[[], None]) -> None:
    """Call after inserting a row for ``digest``, before committing it; ``restore`` stores
    the bytes again (from the staged upload) if gc removed them meanwhile."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_advisory_xact_lock_shared(_key(digest))))
    if not storage.exists(digest):
        restore()


def referenced(connection: sa.Connection, digests: list[str]) -> set[str]:
    """Which of ``digests`` some row points at."""
    if not digests:
        return set()
    # Datasets are stored in the same blob store, by the same digests.
    rows = connection.execute(
        sa.union(
            sa.select(Component.digest).where(Component.digest.in_(digests)),
            sa.select(Dataset.digest).where(Dataset.digest.in_(digests)),
        )
    )
    return {d for (d,) in rows}


def delete_if_orphan(engine: sa.Engine, storage: BlobStorage, digest: str) -> bool:
    """Delete the blob if, under the exclusive lock, still no row references it."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            if not conn.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(_key(digest)))):
                return False  # an upload of these bytes is committing right now
            if referenced(conn, [digest]):
                return False
            storage.delete(digest)
            return True
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            if referenced(conn, [digest]):
                return False
            storage.delete(digest)
            return True
        finally:
            conn.exec_driver_sql("COMMIT")
