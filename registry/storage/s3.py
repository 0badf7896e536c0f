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

from partsbin.registry.storage.base import BlobReader, StorageError, StoredObject, blob_key, digest_of_key


class S3Storage:
    keeps_staged_file = False

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60),
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
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(digest))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
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
