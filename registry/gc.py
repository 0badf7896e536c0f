"""Finding and removing what crashes leave behind (``partsbin gc``).

- **Orphan blobs**: blobs no row references. An upload stores its blob before it
  commits its row, so a crash in between leaves one, in any backend. Only orphans older
  than the grace period are taken (a young one may belong to an upload that is about to
  commit), and each is re-checked and deleted under a lock that excludes a concurrent
  upload of the same bytes (``crud/blobs.py``).
- **Leftovers of interrupted writes**: a local blob's temporary link, an S3 multipart
  upload never completed. Older than the grace period.
- **Stale staging folders**: those of registry processes that are no longer running
  (``staging.py``); a running registry sweeps them at start-up too.

Nothing is removed unless asked (``delete=True``): the default is to report.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import cast

import sqlalchemy as sa

from partsbin.registry.crud.blobs import delete_if_orphan, referenced
from partsbin.registry.staging import StagingArea, StaleStaging
from partsbin.registry.storage import BlobStorage, DirectStorage, StoredObject

__all__ = ["GcReport", "collect"]

_BATCH = 500


@dataclass
class GcReport:
    orphans: list[StoredObject] = field(default_factory=list)
    leftovers: list[StoredObject] = field(default_factory=list)
    staging: list[StaleStaging] = field(default_factory=list)
    #: Orphans kept because an upload of the same bytes took them back meanwhile.
    kept: list[str] = field(default_factory=list)
    deleted: bool = False

    @property
    def bytes(self) -> int:
        return sum(o.size for o in self.orphans + self.leftovers) + sum(s.bytes for s in self.staging)


def _batches(items: Iterator[StoredObject], n: int) -> Iterator[list[StoredObject]]:
    while batch := list(islice(items, n)):
        yield batch


def collect(
    *,
    engine: sa.Engine,
    storage: BlobStorage,
    staging: StagingArea,
    grace: timedelta,
    delete: bool = False,
    now: datetime | None = None,
) -> GcReport:
    cutoff = (now or datetime.now(UTC)) - grace
    report = GcReport(deleted=delete)
    report.staging = staging.sweep(dry_run=not delete)
    for obj in storage.list_leftovers():
        if obj.modified <= cutoff:
            report.leftovers.append(obj)
            if delete:
                storage.delete_leftover(obj)
    if storage.direct_transfers:
        # Uploads straight to S3 that a client started and never completed (or whose
        # staged copy a crash left behind after it was recorded).
        direct = cast(DirectStorage, storage)
        for obj in direct.list_staged():
            if obj.modified <= cutoff:
                report.leftovers.append(obj)
                if delete:
                    direct.delete_staged_object(obj)
    for batch in _batches(storage.list_blobs(), _BATCH):
        old = {o.digest: o for o in batch if o.digest and o.modified <= cutoff}
        with engine.connect() as conn:
            used = referenced(conn, list(old))
        for digest, obj in old.items():
            if digest in used:
                continue
            if delete and not delete_if_orphan(engine, storage, digest):
                report.kept.append(digest)
                continue
            report.orphans.append(obj)
    return report
