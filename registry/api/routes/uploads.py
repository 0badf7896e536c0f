"""/uploads: publishing a component whose bytes go straight to S3.

With the S3 backend a client need not push the file through the registry (as MLflow's
presigned multipart uploads and the Hugging Face Hub's storage do):

1. ``POST /uploads`` with the file's size and sha256: the registry starts a multipart
   upload to a staging key of the token's own and answers a presigned URL per part;
2. the client PUTs the parts to S3 and collects their ETags;
3. ``POST /uploads/{id}/complete`` with the ETags (and the card, unless embedded): the
   registry assembles the object, checks its size and sha256 against what was declared
   (reading it from S3: hashing is the one pass over the bytes the registry makes),
   runs the upload checks on the header, copies the object to its blob key inside the
   store, and records the component. If anything differs or fails, nothing is recorded
   and the staged object is removed.

The local-folder backend answers 409 (``direct_upload_unavailable``): its clients push
through ``POST /components``.
"""

from __future__ import annotations

import hashlib
import math
import struct
import uuid
from typing import Annotated, Any, cast

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from partsbin.registry.api.deps import (
    PublisherDep,
    SessionFactoryDep,
    SettingsDep,
    StagingDep,
    StorageDep,
)
from partsbin.registry.api.responses import errors, published
from partsbin.registry.api.schemas import MAX_PARTS, AbortIn, ComponentOut, UploadCompleteIn, UploadIn, UploadOut
from partsbin.registry.api.timing import ServerTiming
from partsbin.registry.config import Settings
from partsbin.registry.crud.tokens import Principal
from partsbin.registry.errors import APIError, InvalidUpload, StorageUnavailable, TooLarge
from partsbin.registry.publish import publish_component
from partsbin.registry.staging import StagingArea
from partsbin.registry.storage import BlobStorage, DirectStorage, StorageError

router = APIRouter(prefix="/uploads", tags=["components"])

_READ = 8 * 1024**2
UploadId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


def _direct(storage: BlobStorage, settings: Settings) -> DirectStorage:
    if not (storage.direct_transfers and settings.s3_direct_transfers):
        raise APIError(
            "this registry does not take uploads straight to its storage (it stores blobs in a local folder, or "
            "PARTSBIN_S3_DIRECT_TRANSFERS is off): publish with POST /components",
            status_code=409,
            code="direct_upload_unavailable",
        )
    return cast(DirectStorage, storage)


def _owner(principal: Principal) -> str:
    """Whose staging keys an upload goes to: the token's own."""
    return str(principal.token_id)


@router.post(
    "", response_model=UploadOut, status_code=201, summary="Start an upload straight to S3", responses=errors(409, 413)
)
def start(body: UploadIn, principal: PublisherDep, settings: SettingsDep, storage: StorageDep) -> UploadOut:
    owner = _owner(principal)
    direct = _direct(storage, settings)
    if body.size > settings.max_upload_bytes:
        raise TooLarge(
            f"{body.size} bytes exceed the registry's limit of {settings.max_upload_bytes} (PARTSBIN_MAX_UPLOAD_BYTES)"
        )
    part_size = max(body.part_size, math.ceil(body.size / MAX_PARTS))
    upload = uuid.uuid4().hex
    try:
        multipart, urls = direct.start_upload(
            owner,
            upload,
            math.ceil(body.size / part_size),
            settings.presign_expiry_seconds,
            {"sha256": body.sha256, "size": str(body.size)},
        )
    except StorageError as exc:
        raise StorageUnavailable(f"blob storage failed; nothing was started: {exc}") from None
    return UploadOut(
        upload_id=upload,
        multipart_id=multipart,
        part_size=part_size,
        urls=urls,
        expires_in=settings.presign_expiry_seconds,
    )


@router.post(
    "/{upload_id}/complete",
    response_model=ComponentOut,
    status_code=201,
    summary="Check and record an upload made straight to S3",
    responses=errors(404, 409),
)
async def complete(
    upload_id: UploadId,
    body: UploadCompleteIn,
    principal: PublisherDep,
    settings: SettingsDep,
    factory: SessionFactoryDep,
    storage: StorageDep,
    staging: StagingDep,
) -> Any:
    owner = _owner(principal)
    direct = _direct(storage, settings)
    return await run_in_threadpool(_complete, upload_id, owner, body, principal, settings, factory, direct, staging)


def _complete(
    upload: str,
    owner: str,
    body: UploadCompleteIn,
    principal: Principal,
    settings: Settings,
    factory: sessionmaker[Session],
    direct: DirectStorage,
    staging: StagingArea,
) -> JSONResponse:
    timing = ServerTiming()
    header_file = None
    try:
        with timing("assemble"):
            try:
                size, declared = direct.finish_upload(owner, upload, body.multipart_id, body.etags)
            except ValueError as exc:
                raise InvalidUpload(str(exc)) from None
            except StorageError as exc:
                raise StorageUnavailable(f"blob storage failed; nothing was published: {exc}") from None
        if str(size) != declared.get("size"):
            raise InvalidUpload(
                f"the parts hold {size} bytes, but the upload was started for {declared.get('size')}; nothing was published"
            )
        with timing("hash"):
            digest, header = _hash_and_header(direct, owner, upload, settings.max_header_bytes)
        if digest != declared.get("sha256"):
            raise InvalidUpload(
                f"the uploaded bytes hash to sha256:{digest}, not the sha256:{declared.get('sha256')} the upload was "
                "started for; nothing was published"
            )
        header_file = staging.new_file()
        header_file.write_bytes(header)
        with factory() as session:
            row, created = publish_component(
                session,
                principal=principal,
                settings=settings,
                storage=direct,
                digest=digest,
                size=size,
                header=header_file,
                form_card=body.card,
                store=lambda: direct.promote_staged(owner, upload, digest),
                timing=timing,
            )
            out = ComponentOut.of(row)
        return published(out, created, timing)
    finally:
        # Recorded or refused, the staged object goes: the blob (if any) is a copy.
        try:
            direct.discard_staged(owner, upload, body.multipart_id)
        except StorageError:
            pass  # left for `partsbin gc`, which removes staged uploads past its grace period
        if header_file is not None:
            header_file.unlink(missing_ok=True)


def _hash_and_header(direct: DirectStorage, owner: str, upload: str, max_header: int) -> tuple[str, bytes]:
    """The object's sha256 (one streaming read) and its safetensors header bytes."""
    reader = direct.open_staged(owner, upload)
    h = hashlib.sha256()
    head = bytearray()
    want: int | None = None
    try:
        while chunk := reader.read(_READ):
            h.update(chunk)
            if want is None or len(head) < want:
                head += chunk
                if want is None and len(head) >= 8:
                    (n,) = struct.unpack("<Q", bytes(head[:8]))
                    want = 8 + min(n, max_header + 1)
    finally:
        reader.close()
    return h.hexdigest(), bytes(head[: want or len(head)])


@router.post("/{upload_id}/abort", status_code=204, summary="Abandon an upload straight to S3", responses=errors(409))
def abort(
    upload_id: UploadId, body: AbortIn, principal: PublisherDep, settings: SettingsDep, storage: StorageDep
) -> None:
    owner = _owner(principal)
    try:
        _direct(storage, settings).discard_staged(owner, upload_id, body.multipart_id)
    except StorageError as exc:
        raise StorageUnavailable(f"blob storage failed: {exc}") from None
