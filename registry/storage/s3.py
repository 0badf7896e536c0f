"""Blobs in an S3 bucket through boto3 (AWS S3, SeaweedFS, MinIO).

Credentials come the usual boto3 way (environment, config files, instance roles).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from partsbin.registry.storage.base import StorageError, blob_key


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

    def local_path(self, digest: str) -> Path | None:
        return None

    async def iter_range(self, digest: str, start: int, end: int, chunk_size: int) -> AsyncIterator[bytes]:
        def _open():
            return self.client.get_object(Bucket=self.bucket, Key=self._key(digest), Range=f"bytes={start}-{end}")[
                "Body"
            ]

        try:
            body = await anyio.to_thread.run_sync(_open)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"could not read blob from s3://{self.bucket}: {exc}") from exc
        try:
            while True:
                chunk = await anyio.to_thread.run_sync(body.read, chunk_size)
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()
