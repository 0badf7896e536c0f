"""/components: publish, look up, download, alias and yank."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from partsbin.parts.names import InvalidName, Ref, parse_digest
from partsbin.registry.api.deps import (
    PrincipalDep,
    ReadSessionDep,
    SessionDep,
    SessionFactoryDep,
    SettingsDep,
    StorageDep,
    check_part,
    require_token,
)
from partsbin.registry.api.files import file_response
from partsbin.registry.api.schemas import AliasIn, AliasOut, ComponentOut, ComponentPage, YankIn
from partsbin.registry.api.timing import ServerTiming
from partsbin.registry.crud import components as crud
from partsbin.registry.errors import APIError, Forbidden, StorageUnavailable
from partsbin.registry.storage import StorageError
from partsbin.registry.upload import ReceivedUpload, receive_upload
from partsbin.registry.validation import validate_upload

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
    "", status_code=201, response_model=ComponentOut, openapi_extra=_UPLOAD_BODY, summary="Publish a component"
)
async def publish(
    request: Request, principal: PrincipalDep, settings: SettingsDep, factory: SessionFactoryDep, storage: StorageDep
) -> Any:
    """Stream the file to a temporary file while hashing it, check it, store the blob,
    then insert the row. Identical bytes under the same name answer 200 with the
    existing version."""
    require_token(principal, "publishing")
    if principal.scope not in ("publish", "admin"):
        raise Forbidden(f"publishing needs a publish or admin token; this one has scope {principal.scope!r}")
    timing = ServerTiming()
    # A storage backend that keeps the staged file as the blob gets it fsynced while it
    # streams in (see parts.hashing), not flushed whole after the last byte.
    with timing("receive"):
        received = await receive_upload(
            request, settings.staging_dir, settings.max_upload_bytes, durable=storage.keeps_staged_file
        )
    try:
        return await run_in_threadpool(_publish, received, principal, settings, factory, storage, timing)
    finally:
        received.discard()


def _publish(received: ReceivedUpload, principal, settings, factory, storage, timing: ServerTiming) -> Any:
    with factory() as session:
        with timing("check"):
            card = validate_upload(
                session=session,
                path=received.path,
                size=received.size,
                form_card=received.card_text,
                max_header_bytes=settings.max_header_bytes,
            )
        if not principal.can_publish(card.namespace):
            raise Forbidden(
                f"this token may not publish into namespace {card.namespace!r} (it may publish into: {', '.join(principal.namespaces) or 'none'})"
            )
        # The blob goes first: a row must never point at bytes that are not stored.
        with timing("store"):
            try:
                if not storage.exists(received.digest):
                    storage.put_file(received.digest, received.path)
            except StorageError as exc:
                raise StorageUnavailable(f"blob storage failed; nothing was published: {exc}") from None
        with timing("record"):
            row, created = crud.create_component(
                session=session, card=card, digest=received.digest, size=received.size, published_by=principal.token_id
            )
            session.commit()
        out = ComponentOut.of(row)
    return JSONResponse(
        out.model_dump(mode="json"), status_code=201 if created else 200, headers={"Server-Timing": timing.header()}
    )


@router.get("", response_model=ComponentPage, summary="List components")
def list_components(
    session: ReadSessionDep,
    settings: SettingsDep,
    role: str | None = None,
    arch: str | None = None,
    group: Annotated[str | None, Query(description="anchor digest (sha256:HEX or HEX)")] = None,
    dataset: str | None = None,
    namespace: str | None = None,
    prefix: Annotated[str | None, Query(description="prefix of 'namespace/name'")] = None,
    tag: Annotated[str | None, Query(description="one of the card's tags")] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="text in 'namespace/name' or the description (any case)")
    ] = None,
    include_yanked: bool = False,
    cursor: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
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
        cursor=_cursor(cursor),
        limit=limit or settings.page_size,
    )
    return ComponentPage(items=[ComponentOut.of(c) for c in page.items], next_cursor=page.next_cursor)


def _cursor(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise APIError(
            f"invalid cursor {value!r}: pass back the next_cursor of the previous page",
            status_code=422,
            code="invalid_request",
        )
    return int(value)


def _digest(value: str) -> str:
    try:
        return parse_digest(value)
    except InvalidName as exc:
        raise APIError(str(exc), status_code=422, code="invalid_name") from None


def _ref(ns: str, name: str, **kw: Any) -> Ref:
    check_part(ns, "namespace")
    check_part(name, "name")
    if "alias" in kw:
        check_part(kw["alias"], "alias")
    if "version" in kw:
        return Ref(kind="version", namespace=ns, name=name, **kw)
    if "alias" in kw:
        return Ref(kind="alias", namespace=ns, name=name, **kw)
    return Ref(kind="latest", namespace=ns, name=name)


@router.get("/by-digest/{hex}", response_model=ComponentOut, summary="Component by file digest")
def by_digest(hex: str, session: ReadSessionDep) -> ComponentOut:
    return ComponentOut.of(crud.resolve_ref(session, Ref(kind="digest", digest=_digest(hex))))


@router.get("/by-digest/{hex}/file", summary="File by digest")
@router.head("/by-digest/{hex}/file", summary="File by digest" + " (headers only)")
def by_digest_file(hex: str, request: Request, session: ReadSessionDep, storage: StorageDep) -> Any:
    return file_response(request, crud.resolve_ref(session, Ref(kind="digest", digest=_digest(hex))), storage)


@router.get("/{ns}/{name}", response_model=ComponentOut, summary="Latest version that is not yanked")
def latest(ns: str, name: str, session: ReadSessionDep) -> ComponentOut:
    return ComponentOut.of(crud.resolve_ref(session, _ref(ns, name)))


@router.get("/{ns}/{name}/file", summary="File of the latest version")
@router.head("/{ns}/{name}/file", summary="File of the latest version" + " (headers only)")
def latest_file(ns: str, name: str, request: Request, session: ReadSessionDep, storage: StorageDep) -> Any:
    return file_response(request, crud.resolve_ref(session, _ref(ns, name)), storage)


@router.get("/{ns}/{name}/versions", response_model=list[ComponentOut], summary="Every version, yanked ones included")
def versions(ns: str, name: str, session: ReadSessionDep) -> list[ComponentOut]:
    return [
        ComponentOut.of(c) for c in crud.list_versions(session, check_part(ns, "namespace"), check_part(name, "name"))
    ]


@router.get("/{ns}/{name}/versions/{version}", response_model=ComponentOut, summary="Exact version (yanked ones too)")
def exact(ns: str, name: str, version: int, session: ReadSessionDep) -> ComponentOut:
    return ComponentOut.of(crud.resolve_ref(session, _ref(ns, name, version=version)))


@router.get("/{ns}/{name}/versions/{version}/file", summary="File of an exact version (yanked ones too)")
@router.head(
    "/{ns}/{name}/versions/{version}/file", summary="File of an exact version (yanked ones too)" + " (headers only)"
)
def exact_file(ns: str, name: str, version: int, request: Request, session: ReadSessionDep, storage: StorageDep) -> Any:
    return file_response(request, crud.resolve_ref(session, _ref(ns, name, version=version)), storage)


@router.get("/{ns}/{name}/aliases/{alias}", response_model=ComponentOut, summary="Version an alias points at")
def by_alias(ns: str, name: str, alias: str, session: ReadSessionDep) -> ComponentOut:
    return ComponentOut.of(crud.resolve_ref(session, _ref(ns, name, alias=alias)))


@router.get("/{ns}/{name}/aliases/{alias}/file", summary="File of the version an alias points at")
@router.head("/{ns}/{name}/aliases/{alias}/file", summary="File of the version an alias points at" + " (headers only)")
def by_alias_file(
    ns: str, name: str, alias: str, request: Request, session: ReadSessionDep, storage: StorageDep
) -> Any:
    return file_response(request, crud.resolve_ref(session, _ref(ns, name, alias=alias)), storage)


def _require_manage(principal, ns: str) -> None:
    require_token(principal, "moving aliases and yanking")
    if not principal.can_manage(ns):
        raise Forbidden(f"only an admin token or an owner of namespace {ns!r} may move aliases or yank")


@router.put("/{ns}/{name}/aliases/{alias}", response_model=AliasOut, summary="Point an alias at a version")
def put_alias(ns: str, name: str, alias: str, body: AliasIn, session: SessionDep, principal: PrincipalDep) -> AliasOut:
    _ref(ns, name, alias=alias)
    _require_manage(principal, ns)
    row = crud.set_alias(session=session, namespace=ns, name=name, alias=alias, version=body.version)
    session.commit()
    return AliasOut(name=f"{ns}/{name}", alias=alias, version=row.version, updated_at=row.updated_at)


@router.delete("/{ns}/{name}/aliases/{alias}", status_code=204, summary="Remove an alias")
def remove_alias(ns: str, name: str, alias: str, session: SessionDep, principal: PrincipalDep) -> None:
    _ref(ns, name, alias=alias)
    _require_manage(principal, ns)
    crud.delete_alias(session=session, namespace=ns, name=name, alias=alias)
    session.commit()


@router.post("/{ns}/{name}/versions/{version}/yank", response_model=ComponentOut, summary="Yank a version")
def yank(ns: str, name: str, version: int, body: YankIn, session: SessionDep, principal: PrincipalDep) -> ComponentOut:
    ref = _ref(ns, name, version=version)
    _require_manage(principal, ns)
    row = crud.yank(session=session, component=crud.resolve_ref(session, ref), reason=body.reason)
    session.commit()
    return ComponentOut.of(row)


@router.delete("/{ns}/{name}/versions/{version}/yank", response_model=ComponentOut, summary="Undo a yank")
def unyank(ns: str, name: str, version: int, session: SessionDep, principal: PrincipalDep) -> ComponentOut:
    ref = _ref(ns, name, version=version)
    _require_manage(principal, ns)
    row = crud.unyank(session=session, component=crud.resolve_ref(session, ref))
    session.commit()
    return ComponentOut.of(row)
