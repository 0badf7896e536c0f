"""Blobs in an S3 bucket through boto3 (AWS S3, SeaweedFS, MinIO).

Credentials come the usual boto3 way (environment, config files, instance roles).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from partsbin.registry.storage.base import BlobReader, StorageError, StoredObject, UploadGone, blob_key, digest_of_key

#: What S3 (and SeaweedFS, MinIO) answer for a multipart upload or an object that is not there.
_MISSING = ("NoSuchUpload", "NoSuchKey", "404", "NotFound")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Storage:
    keeps_staged_file = False
    #: Clients can move bytes straight to and from the bucket (presigned URLs).
    direct_transfers = True
    local_files = False

    def __init__(
        self, bucket: str, prefix: str = "", endpoint_url: str | None = None, public_endpoint_url: str | None = None
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        config = Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            signature_version="s3v4",
        )
        self.client = boto3.client("s3", endpoint_url=endpoint_url, config=config)
        # Presigned URLs name the address *clients* reach, which behind a proxy or in a
        # container network is not the one the registry uses.
        self._signer = (
            boto3.client("s3", endpoint_url=public_endpoint_url, config=config) if public_endpoint_url else self.client
        )
        self._transfer = TransferConfig(multipart_threshold=64 * 1024**2, multipart_chunksize=64 * 1024**2)

    def _key(self, digest: str) -> str:
        key = blob_key(digest)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, digest: str, path: Path) -> None:
        try:
            self.client.upload_file(str(path), self.bucket, self._key(digest), Config=self._transfer)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not store blob in s3://{self.bucket}: {exc}") from exc

    def exists(self, digest: str) -> bool:
        return self._has(self._key(digest))

    def _has(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise StorageError(f"could not reach s3://{self.bucket}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not reach s3://{self.bucket}: {exc}") from exc

    def delete(self, digest: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(digest))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not delete blob in s3://{self.bucket}: {exc}") from exc

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"cannot reach bucket s3://{self.bucket}: {exc}") from exc

    def open_range(self, digest: str, start: int, end: int) -> BlobReader:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(digest), Range=f"bytes={start}-{end}")
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not read blob from s3://{self.bucket}: {exc}") from exc
        return body["Body"]

    @property
    def _blob_prefix(self) -> str:
        return f"{self.prefix}/blobs/sha256/" if self.prefix else "blobs/sha256/"

    def _relative(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def list_blobs(self) -> Iterator[StoredObject]:
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._blob_prefix)
            for page in pages:
                for obj in page.get("Contents", []):
                    digest = digest_of_key(self._relative(obj["Key"]))
                    if digest is not None:
                        yield StoredObject(obj["Key"], int(obj["Size"]), obj["LastModified"], digest)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not list s3://{self.bucket}: {exc}") from exc

    def list_leftovers(self) -> Iterator[StoredObject]:
        """Multipart uploads a crash interrupted: their parts take space but are no object."""
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self._blob_prefix
            )
            for page in pages:
                for up in page.get("Uploads", []):
                    yield StoredObject(f"{up['Key']}?uploadId={up['UploadId']}", 0, up["Initiated"])
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not list multipart uploads of s3://{self.bucket}: {exc}") from exc

    def delete_leftover(self, obj: StoredObject) -> None:
        key, _, upload_id = obj.key.partition("?uploadId=")
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not abort the multipart upload of {key}: {exc}") from exc

    # -- direct transfers: clients move the bytes, the registry checks and records them --
    def presign_download(self, digest: str, expires: int, filename: str) -> str:
        """A short-lived URL that GETs the blob straight from the bucket (Range works)."""
        try:
            return self._signer.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self._key(digest),
                    "ResponseContentDisposition": f'attachment; filename="{filename}"',
                },
                ExpiresIn=expires,
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not presign a download from s3://{self.bucket}: {exc}") from exc

    def _staged_key(self, owner: str, upload: str) -> str:
        key = f"uploads/{owner}/{upload}"
        return f"{self.prefix}/{key}" if self.prefix else key

    def start_upload(
        self, owner: str, upload: str, parts: int, expires: int, declared: dict[str, str]
    ) -> tuple[str, list[str]]:
        """A multipart upload to a staging key, and a presigned PUT URL per part.
        ``declared`` (what the client said the file is) is kept as the object's metadata."""
        key = self._staged_key(owner, upload)
        try:
            multipart = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, Metadata=declared)["UploadId"]
            urls = [
                self._signer.generate_presigned_url(
                    "upload_part",
                    Params={"Bucket": self.bucket, "Key": key, "UploadId": multipart, "PartNumber": n},
                    ExpiresIn=expires,
                )
                for n in range(1, parts + 1)
            ]
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not start an upload to s3://{self.bucket}: {exc}") from exc
        return multipart, urls

    def finish_upload(self, owner: str, upload: str, multipart: str, etags: list[str]) -> tuple[int, dict[str, str]]:
        """Assemble the parts; returns the object's size and what was declared at the start."""
        key = self._staged_key(owner, upload)
        parts = [{"PartNumber": n, "ETag": etag} for n, etag in enumerate(etags, start=1)]
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=multipart, MultipartUpload={"Parts": parts}
            )
            head = self.client.head_object(Bucket=self.bucket, Key=key)
            return int(head["ContentLength"]), dict(head.get("Metadata") or {})
        except ClientError as exc:
            code = _code(exc)
            if code in _MISSING:
                raise UploadGone(upload) from None
            if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall"):
                raise ValueError(f"the upload's parts do not make an object ({code}): {exc}") from None
            raise StorageError(f"could not finish an upload to s3://{self.bucket}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not finish an upload to s3://{self.bucket}: {exc}") from exc

    def open_staged(self, owner: str, upload: str, start: int = 0, end: int | None = None) -> BlobReader:
        rng = f"bytes={start}-{'' if end is None else end}"
        key = self._staged_key(owner, upload)
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key, Range=rng)["Body"]
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise UploadGone(upload) from None
            raise StorageError(f"could not read an upload from s3://{self.bucket}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not read an upload from s3://{self.bucket}: {exc}") from exc
        return _StagedReader(self, body, owner, upload)

    def promote_staged(self, owner: str, upload: str, digest: str) -> None:
        """Copy a checked upload to its blob key (a copy inside the store, no bytes through
        the registry); idempotent."""
        if self.exists(digest):
            return
        try:
            self.client.copy(
                {"Bucket": self.bucket, "Key": self._staged_key(owner, upload)},
                self.bucket,
                self._key(digest),
                Config=self._transfer,
            )
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise UploadGone(upload) from None
            raise StorageError(f"could not store blob in s3://{self.bucket}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"could not store blob in s3://{self.bucket}: {exc}") from exc

    def discard_staged(self, owner: str, upload: str, multipart: str | None = None) -> None:
        key = self._staged_key(owner, upload)
        try:
            if multipart:
                try:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=multipart)
                except ClientError:
                    pass  # already completed (then the object below goes) or already aborted
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not remove an upload from s3://{self.bucket}: {exc}") from exc

    def list_staged(self) -> Iterator[StoredObject]:
        """Uploads straight to the bucket that were never completed or recorded."""
        prefix = self._staged_key("", "").rstrip("/") + "/"
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    yield StoredObject(obj["Key"], int(obj["Size"]), obj["LastModified"])
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
                for up in page.get("Uploads", []):
                    yield StoredObject(f"{up['Key']}?uploadId={up['UploadId']}", 0, up["Initiated"])
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not list uploads of s3://{self.bucket}: {exc}") from exc

    def delete_staged_object(self, obj: StoredObject) -> None:
        key, _, upload_id = obj.key.partition("?uploadId=")
        try:
            if upload_id:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            else:
                self.client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not remove {key}: {exc}") from exc


class _StagedReader:
    """A staged object's body whose read errors say whether the object went away
    (aborted while it was read: :class:`UploadGone`) or the store failed (:class:`StorageError`)."""

    def __init__(self, storage: S3Storage, body: BlobReader, owner: str, upload: str) -> None:
        self._storage, self._body, self._owner, self._upload = storage, body, owner, upload

    def read(self, n: int) -> bytes:
        try:
            return self._body.read(n)
        except Exception as exc:  # botocore and urllib3 each raise their own for a broken stream
            if not self._storage._has(self._storage._staged_key(self._owner, self._upload)):
                raise UploadGone(self._upload) from None
            raise StorageError(f"could not read an upload from s3://{self._storage.bucket}: {exc}") from exc

    def close(self) -> None:
        self._body.close()
