"""Publishing a component, however its bytes arrived.

``POST /components`` (the file streamed through the registry, ``registry/upload.py``)
and ``POST /uploads/{id}/complete`` (the file uploaded straight to S3,
``api/routes/uploads.py``) both end here, once the bytes are staged and their digest is
known: check the header and card, authorise the namespace, store the blob, record the
row, re-check the blob under its lock, commit. Nothing is recorded unless every step
succeeds; a blob stored for a refused or failed publish is an orphan for ``partsbin gc``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session

from partsbin.registry.api.timing import ServerTiming
from partsbin.registry.config import Settings
from partsbin.registry.crud import components as crud
from partsbin.registry.crud.auto_evaluate import queue_evaluations
from partsbin.registry.crud.blobs import ensure_blob
from partsbin.registry.crud.tokens import Principal
from partsbin.registry.db.models import Component
from partsbin.registry.errors import Forbidden, StorageUnavailable
from partsbin.registry.storage import BlobStorage, StorageError
from partsbin.registry.validation import validate_upload

__all__ = ["publish_component"]


def publish_component(
    session: Session,
    *,
    principal: Principal,
    settings: Settings,
    storage: BlobStorage,
    digest: str,
    size: int,
    header: Path,
    form_card: str | None,
    store: Callable[[], None],
    timing: ServerTiming,
) -> tuple[Component, bool]:
    """Check, authorise, store, record and commit; returns ``(component, created)``.

    ``header`` is a file that starts with the upload's safetensors header (the whole
    file, or its first bytes); ``store`` puts the bytes under ``digest`` unless they are
    there already. Identical bytes under the same name return the existing version
    (``created`` false). Raises the API's errors (422, 403, 409, 503), nothing committed.
    """
    with timing("check"):
        card = validate_upload(
            session=session,
            path=header,
            size=size,
            form_card=form_card,
            max_header_bytes=settings.max_header_bytes,
        )
    if not principal.can_publish(card.namespace):
        raise Forbidden(
            f"this token may not publish into namespace {card.namespace!r} "
            f"(it may publish into: {', '.join(principal.namespaces) or 'none'})"
        )
    # The blob goes first: a row must never point at bytes that are not stored.
    with timing("store"):
        _storing(store)
    with timing("record"):
        row, created = crud.create_component(
            session=session, card=card, digest=digest, size=size, published_by=principal.token_id
        )
        if created:
            # `partsbin gc` may have removed these bytes as an orphan between the store
            # step and now; under the blob's lock, put them back if so.
            _storing(lambda: ensure_blob(session, storage, digest, store))
            queue_evaluations(session, row, settings)
        session.commit()
    return row, created


def _storing(step: Callable[[], None]) -> None:
    try:
        step()
    except StorageError as exc:
        raise StorageUnavailable(f"blob storage failed; nothing was published: {exc}") from None
