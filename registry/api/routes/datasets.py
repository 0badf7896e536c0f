"""/datasets: register, look up and download datasets (``partsbin push-data``).

A dataset is stored like a component: content-addressed in the blob store, versions
immutable, identical bytes under one name one version. The registry reads the file to
describe it (classes, splits, image shape: :func:`partsbin.parts.datasets.inspect_dataset`)
and refuses what it cannot read, storing nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from partsbin.parts.datasets import DataCard, DatasetError, dataset_name, inspect_dataset
from partsbin.parts.jsonlimits import JsonLimitError, loads
from partsbin.parts.messages import describe_validation_error
from partsbin.parts.names import InvalidName, Ref
from partsbin.registry.api.deps import (
    ReadSessionDep,
    ReadSessionFactoryDep,
    RequireToken,
    SessionFactoryDep,
    SettingsDep,
    StagingDep,
    StorageDep,
)
from partsbin.registry.api.files import serve_file
from partsbin.registry.api.params import DigestPath, IdCursor, Limit, NamePath, NamespacePath, VersionPath
from partsbin.registry.api.responses import FILE_RESPONSES, errors
from partsbin.registry.api.schemas import DatasetOut, DatasetPage
from partsbin.registry.crud import datasets as crud
from partsbin.registry.crud.blobs import ensure_blob
from partsbin.registry.crud.tokens import Principal
from partsbin.registry.db.models import Dataset
from partsbin.registry.errors import APIError, Forbidden, StorageUnavailable
from partsbin.registry.storage import StorageError
from partsbin.registry.upload import ReceivedUpload, receive_upload

router = APIRouter(prefix="/datasets", tags=["datasets"])

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "card"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "an .npz, or a tar of images"},
                        "card": {"type": "string", "description": "the data card (JSON): name, license, source..."},
                    },
                }
            }
        },
    }
}


def _card(text: str | None) -> DataCard:
    if text is None:
        raise APIError("send the data card as the form field 'card' (JSON, with at least 'name')", status_code=422)
    try:
        card = DataCard.model_validate(loads(text))
        dataset_name(card)
    except (JsonLimitError, ValueError) as exc:
        raise APIError(f"invalid data card: {exc}", status_code=422, code="invalid_upload") from None
    except ValidationError as exc:
        raise APIError(
            f"invalid data card: {describe_validation_error(exc)}", status_code=422, code="invalid_upload"
        ) from None
    if card.facts is not None:
        raise APIError("invalid data card: 'facts' is set by the registry from the file; leave it out", status_code=422)
    return card


@router.post(
    "",
    status_code=201,
    response_model=DatasetOut,
    openapi_extra=_UPLOAD_BODY,
    summary="Register a dataset",
    responses={
        200: {"model": DatasetOut, "description": "these bytes were already registered under this name"},
        **errors(409, 413),
    },
)
async def publish(
    request: Request,
    principal: Annotated[
        Principal,
        Depends(
            RequireToken(
                "registering datasets",
                ("publish", "admin"),
                "registering a dataset needs a publish or admin token; this one has scope {scope}",
            )
        ),
    ],
    settings: SettingsDep,
    factory: SessionFactoryDep,
    storage: StorageDep,
    staging: StagingDep,
) -> Any:
    received = await receive_upload(request, staging, settings.max_dataset_bytes, durable=storage.keeps_staged_file)
    try:
        return await run_in_threadpool(_publish, received, principal, settings, factory, storage)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(received.discard)


def _publish(received: ReceivedUpload, principal: Any, settings: Any, factory: Any, storage: Any) -> Any:
    card = _card(received.card_text)
    namespace, _ = dataset_name(card)
    if not principal.can_publish(namespace):
        raise Forbidden(f"this token may not publish into namespace {namespace!r}")
    try:
        facts = inspect_dataset(received.path, max_bytes=settings.max_dataset_bytes * 4)
    except DatasetError as exc:
        raise APIError(f"not a dataset partsbin stores: {exc}", status_code=422, code="invalid_upload") from None
    try:
        if not storage.exists(received.digest):
            storage.put_file(received.digest, received.path)
    except StorageError as exc:
        raise StorageUnavailable(f"blob storage failed; nothing was registered: {exc}") from None
    with factory() as session:
        row, created = crud.create_dataset(
            session=session,
            card=card,
            facts=facts,
            digest=received.digest,
            size=received.size,
            published_by=principal.token_id,
        )
        if created:
            try:
                ensure_blob(session, storage, received.digest, lambda: storage.put_file(received.digest, received.path))
            except StorageError as exc:
                raise StorageUnavailable(f"blob storage failed; nothing was registered: {exc}") from None
            session.commit()
        out = DatasetOut.of(row)
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if created else 200)


@router.get("", response_model=DatasetPage, summary="List datasets")
def list_datasets(
    session: ReadSessionDep,
    settings: SettingsDep,
    namespace: str | None = None,
    cursor: IdCursor = None,
    limit: Limit = None,
) -> DatasetPage:
    page = crud.list_datasets(session, namespace=namespace, cursor=cursor, limit=limit or settings.page_size)
    return DatasetPage(items=[DatasetOut.of(d) for d in page.items], next_cursor=page.next_cursor)  # type: ignore[arg-type]


_LOOKUP = errors(404)
_FILE = FILE_RESPONSES | errors(404)


def _named(ns: str, name: str, version: int | None = None) -> Ref:
    try:
        if version is None:
            return Ref(kind="latest", namespace=ns, name=name)
        return Ref(kind="version", namespace=ns, name=name, version=version)
    except InvalidName as exc:
        raise APIError(str(exc), status_code=422, code="invalid_name") from None


@router.get("/by-digest/{hex}", response_model=DatasetOut, summary="Dataset by file digest", responses=_LOOKUP)
def by_digest(hex: DigestPath, session: ReadSessionDep) -> DatasetOut:
    return DatasetOut.of(crud.resolve_dataset(session, Ref(kind="digest", digest=hex)))


@router.get("/by-digest/{hex}/file", summary="Dataset file by digest", responses=_FILE, response_class=Response)
def by_digest_file(hex: DigestPath, request: Request, factory: ReadSessionFactoryDep, storage: StorageDep) -> Any:
    ref = Ref(kind="digest", digest=hex)
    return serve_file(request, factory, lambda s: crud.resolve_dataset(s, ref), storage)


@router.get("/{ns}/{name}", response_model=DatasetOut, summary="The latest version of a dataset", responses=_LOOKUP)
def latest(ns: NamespacePath, name: NamePath, session: ReadSessionDep) -> DatasetOut:
    return DatasetOut.of(crud.resolve_dataset(session, _named(ns, name)))


@router.get(
    "/{ns}/{name}/versions", response_model=list[DatasetOut], summary="Every version of a dataset", responses=_LOOKUP
)
def versions(ns: NamespacePath, name: NamePath, session: ReadSessionDep) -> list[DatasetOut]:
    return [DatasetOut.of(d) for d in crud.list_dataset_versions(session, ns, name)]


@router.get(
    "/{ns}/{name}/versions/{version}", response_model=DatasetOut, summary="One version of a dataset", responses=_LOOKUP
)
def version(ns: NamespacePath, name: NamePath, version: VersionPath, session: ReadSessionDep) -> DatasetOut:
    return DatasetOut.of(crud.resolve_dataset(session, _named(ns, name, version)))


@router.get(
    "/{ns}/{name}/versions/{version}/file", summary="A dataset version's file", responses=_FILE, response_class=Response
)
def version_file(
    ns: NamespacePath,
    name: NamePath,
    version: VersionPath,
    request: Request,
    factory: ReadSessionFactoryDep,
    storage: StorageDep,
) -> Any:
    ref = _named(ns, name, version)

    def lookup(session: Session) -> Dataset:
        return crud.resolve_dataset(session, ref)

    return serve_file(request, factory, lookup, storage)
