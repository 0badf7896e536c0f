"""/components: publish, look up, download, alias and yank."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from partsbin.parts.card import Role
from partsbin.parts.names import InvalidName, Ref, parse_digest
from partsbin.registry.api.deps import (
    PublisherDep,
    ReadSessionDep,
    ReadSessionFactoryDep,
    RequireToken,
    SessionDep,
    SessionFactoryDep,
    SettingsDep,
    StagingDep,
    StorageDep,
)
from partsbin.registry.api.files import serve_file
from partsbin.registry.api.params import (
    AliasPath,
    DigestFilter,
    DigestPath,
    IdCursor,
    Limit,
    NamePath,
    NamespacePath,
    VersionPath,
)
from partsbin.registry.api.responses import FILE_RESPONSES, errors, published
from partsbin.registry.api.schemas import AliasIn, AliasOut, ComponentOut, ComponentPage, YankIn
from partsbin.registry.api.timing import ServerTiming
from partsbin.registry.config import Settings
from partsbin.registry.crud import components as crud
from partsbin.registry.crud.tokens import Principal
from partsbin.registry.db.models import Component
from partsbin.registry.errors import APIError, Forbidden, NotFound
from partsbin.registry.publish import publish_component
from partsbin.registry.storage import BlobStorage
from partsbin.registry.upload import ReceivedUpload, receive_upload

router = APIRouter(prefix="/components", tags=["components"])

_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "the .safetensors bytes"},
                        "card": {
                            "type": "string",
                            "description": "the component card (JSON); optional when embedded in the file",
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=ComponentOut,
    openapi_extra=_UPLOAD_BODY,
    summary="Publish a component",
    responses={
        200: {"model": ComponentOut, "description": "these bytes were already published under this name"},
        **errors(409, 413),
    },
)
async def publish(
    request: Request,
    principal: PublisherDep,
    settings: SettingsDep,
    factory: SessionFactoryDep,
    storage: StorageDep,
    staging: StagingDep,
) -> Any:
    """Stream the file to a temporary file while hashing it, check it, store the blob,
    then insert the row. Identical bytes under the same name answer 200 with the
    existing version."""
    timing = ServerTiming()
    # A storage backend that keeps the staged file as the blob gets it fsynced while it
    # streams in (see parts.hashing), not flushed whole after the last byte.
    with timing("receive"):
        received = await receive_upload(request, staging, settings.max_upload_bytes, durable=storage.keeps_staged_file)
    try:
        return await run_in_threadpool(_publish, received, principal, settings, factory, storage, timing)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(received.discard)


def _publish(
    received: ReceivedUpload,
    principal: Principal,
    settings: Settings,
    factory: sessionmaker[Session],
    storage: BlobStorage,
    timing: ServerTiming,
) -> JSONResponse:
    def store() -> None:
        if not storage.exists(received.digest):
            storage.put_file(received.digest, received.path)

    with factory() as session:
        row, created = publish_component(
            session,
            principal=principal,
            settings=settings,
            storage=storage,
            digest=received.digest,
            size=received.size,
            header=received.path,
            form_card=received.card_text,
            store=store,
            timing=timing,
        )
        out = ComponentOut.of(row)
    return published(out, created, timing)


@router.get("", response_model=ComponentPage, summary="List components")
def list_components(
    session: ReadSessionDep,
    settings: SettingsDep,
    role: Role | None = None,
    arch: str | None = None,
    group: Annotated[DigestFilter | None, Query(description="anchor digest (sha256:HEX or HEX)")] = None,
    dataset: str | None = None,
    namespace: str | None = None,
    prefix: Annotated[str | None, Query(description="prefix of 'namespace/name'")] = None,
    tag: Annotated[str | None, Query(description="one of the card's tags")] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="text in 'namespace/name' or the description (any case)")
    ] = None,
    include_yanked: bool = False,
    cursor: IdCursor = None,
    limit: Limit = None,
) -> ComponentPage:
    page = crud.list_components(
        session,
        role=role,
        arch=arch,
        group=_digest(group) if group else None,
        dataset=dataset,
        namespace=namespace,
        prefix=prefix,
        tag=tag,
        q=q,
        include_yanked=include_yanked,
        cursor=cursor,
        limit=limit or settings.page_size,
    )
    return ComponentPage(items=[ComponentOut.of(c) for c in page.items], next_cursor=page.next_cursor)


def _digest(value: str) -> str:
    try:
        return parse_digest(value)
    except InvalidName as exc:
        raise APIError(str(exc), status_code=422, code="invalid_name") from None


def _ref(ns: str, name: str, **kw: Any) -> Ref:
    if "version" in kw:
        return Ref(kind="version", namespace=ns, name=name, **kw)
    if "alias" in kw:
        return Ref(kind="alias", namespace=ns, name=name, **kw)
    return Ref(kind="latest", namespace=ns, name=name)


def _file(request: Request, factory: sessionmaker[Session], storage: BlobStorage, ref: Ref) -> Any:
    def lookup(session: Session) -> Component:
        return crud.resolve_ref(session, ref)

    return serve_file(request, factory, lookup, storage)


_LOOKUP = errors(404)
_FILE = FILE_RESPONSES | errors(404)


@router.get("/by-digest/{hex}", response_model=ComponentOut, summary="Component by file digest", responses=_LOOKUP)
def by_digest(hex: DigestPath, session: ReadSessionDep) -> ComponentOut:
    return ComponentOut.of(crud.resolve_ref(session, Ref(kind="digest", digest=hex)))


@router.get("/by-digest/{hex}/file", summary="File by digest", responses=_FILE, response_class=Response)
@router.head(
    "/by-digest/{hex}/file", summary="File by digest" + " (headers only)", responses=_FILE, response_class=Response
)
def by_digest_file(hex: DigestPath, request: Request, factory: ReadSessionFactoryDep, storage: StorageDep) -> Any:
    return _file(request, factory, storage, Ref(kind="digest", digest=hex))


@router.get("/{ns}/{name}", response_model=ComponentOut, summary="Latest version that is not yanked", responses=_LOOKUP)
def latest(ns: NamespacePath, name: NamePath, session: ReadSessionDep) -> ComponentOut:
    return ComponentOut.of(crud.resolve_ref(session, _ref(ns, name)))


@router.get("/{ns}/{name}/file", summary="File of the latest version", responses=_FILE, response_class=Response)
@router.head(
    "/{ns}/{name}/file",
    summary="File of the latest version" + " (headers only)",
    responses=_FILE,
    response_class=Response,
)
def latest_file(
    ns: NamespacePath, name: NamePath, request: Request, factory: ReadSessionFactoryDep, storage: StorageDep
) -> Any:
    return _file(request, factory, storage, _ref(ns, name))


@router.get(
    "/{ns}/{name}/versions",
    response_model=list[ComponentOut],
    summary="Every version, yanked ones included",
    responses=_LOOKUP,
)
def versions(ns: NamespacePath, name: NamePath, session: ReadSessionDep) -> list[ComponentOut]:
    return [ComponentOut.of(c) for c in crud.list_versions(session, ns, name)]


@router.get(
    "/{ns}/{name}/aliases",
    response_model=list[AliasOut],
    summary="Every alias of a component and the version it points at",
    responses=_LOOKUP,
)
def aliases(ns: NamespacePath, name: NamePath, session: ReadSessionDep) -> list[AliasOut]:
    if not crud.list_versions(session, ns, name):
        raise NotFound(f"no component {ns}/{name}")
    return [
        AliasOut(name=f"{ns}/{name}", alias=a.alias, version=a.version, updated_at=a.updated_at)
        for a in crud.list_aliases(session, ns, name)
    ]


@router.get(
    "/{ns}/{name}/versions/{version:id}",
    response_model=ComponentOut,
    summary="Exact version (yanked ones too)",
    responses=_LOOKUP,
)
def exact(ns: NamespacePath, name: NamePath, version: VersionPath, session: ReadSessionDep) -> ComponentOut:
    return ComponentOut.of(crud.resolve_ref(session, _ref(ns, name, version=version)))


@router.get(
    "/{ns}/{name}/versions/{version:id}/file",
    summary="File of an exact version (yanked ones too)",
    responses=_FILE,
    response_class=Response,
)
@router.head(
    "/{ns}/{name}/versions/{version:id}/file",
    summary="File of an exact version (yanked ones too)" + " (headers only)",
    responses=_FILE,
    response_class=Response,
)
def exact_file(
    ns: NamespacePath,
    name: NamePath,
    version: VersionPath,
    request: Request,
    factory: ReadSessionFactoryDep,
    storage: StorageDep,
) -> Any:
    return _file(request, factory, storage, _ref(ns, name, version=version))


@router.get(
    "/{ns}/{name}/aliases/{alias}",
    response_model=ComponentOut,
    summary="Version an alias points at",
    responses=_LOOKUP,
)
def by_alias(ns: NamespacePath, name: NamePath, alias: AliasPath, session: ReadSessionDep) -> ComponentOut:
    return ComponentOut.of(crud.resolve_ref(session, _ref(ns, name, alias=alias)))


@router.get(
    "/{ns}/{name}/aliases/{alias}/file",
    summary="File of the version an alias points at",
    responses=_FILE,
    response_class=Response,
)
@router.head(
    "/{ns}/{name}/aliases/{alias}/file",
    summary="File of the version an alias points at" + " (headers only)",
    responses=_FILE,
    response_class=Response,
)
def by_alias_file(
    ns: NamespacePath,
    name: NamePath,
    alias: AliasPath,
    request: Request,
    factory: ReadSessionFactoryDep,
    storage: StorageDep,
) -> Any:
    return _file(request, factory, storage, _ref(ns, name, alias=alias))


ManagerDep = Annotated[Principal, Depends(RequireToken("moving aliases and yanking"))]


def _require_manage(principal: Principal, ns: str) -> None:
    if not principal.can_manage(ns):
        raise Forbidden(f"only an admin token or an owner of namespace {ns!r} may move aliases or yank")


_MANAGE = errors(404)


@router.put(
    "/{ns}/{name}/aliases/{alias}", response_model=AliasOut, summary="Point an alias at a version", responses=_MANAGE
)
def put_alias(
    ns: NamespacePath, name: NamePath, alias: AliasPath, body: AliasIn, session: SessionDep, principal: ManagerDep
) -> AliasOut:
    _require_manage(principal, ns)
    row = crud.set_alias(session=session, namespace=ns, name=name, alias=alias, version=body.version)
    session.commit()
    return AliasOut(name=f"{ns}/{name}", alias=alias, version=row.version, updated_at=row.updated_at)


@router.delete("/{ns}/{name}/aliases/{alias}", status_code=204, summary="Remove an alias", responses=_MANAGE)
def remove_alias(
    ns: NamespacePath, name: NamePath, alias: AliasPath, session: SessionDep, principal: ManagerDep
) -> None:
    _require_manage(principal, ns)
    crud.delete_alias(session=session, namespace=ns, name=name, alias=alias)
    session.commit()


@router.post(
    "/{ns}/{name}/versions/{version:id}/yank", response_model=ComponentOut, summary="Yank a version", responses=_MANAGE
)
def yank(
    ns: NamespacePath, name: NamePath, version: VersionPath, body: YankIn, session: SessionDep, principal: ManagerDep
) -> ComponentOut:
    _require_manage(principal, ns)
    row = crud.yank(
        session=session, component=crud.resolve_ref(session, _ref(ns, name, version=version)), reason=body.reason
    )
    session.commit()
    return ComponentOut.of(row)


@router.delete(
    "/{ns}/{name}/versions/{version:id}/yank", response_model=ComponentOut, summary="Undo a yank", responses=_MANAGE
)
def unyank(
    ns: NamespacePath, name: NamePath, version: VersionPath, session: SessionDep, principal: ManagerDep
) -> ComponentOut:
    _require_manage(principal, ns)
    row = crud.unyank(session=session, component=crud.resolve_ref(session, _ref(ns, name, version=version)))
    session.commit()
    return ComponentOut.of(row)
