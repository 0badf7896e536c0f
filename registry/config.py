"""Registry settings, read from ``PARTSBIN_*`` environment variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from partsbin.parts.jobs.limits import JobLimits

__all__ = ["Settings"]


class Settings(BaseSettings, JobLimits):
    """The registry's settings. The limits on what a job may cost (``PARTSBIN_MAX_JOB_*``)
    come from :class:`~partsbin.parts.jobs.limits.JobLimits`."""

    model_config = SettingsConfigDict(env_prefix="PARTSBIN_", extra="ignore")

    data_dir: Path = Field(default=Path("./partsbin-data"), description="embedded default: SQLite file and blob folder")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite under data_dir")
    storage_url: str | None = Field(
        default=None, description="file:///path or s3://bucket/prefix; default data_dir/blobs"
    )
    s3_endpoint_url: str | None = Field(default=None, description="for S3-compatible servers (SeaweedFS, MinIO)")
    s3_public_endpoint_url: str | None = Field(
        default=None, description="the S3 address clients reach, in presigned URLs; default: s3_endpoint_url"
    )
    s3_direct_transfers: bool = Field(
        default=True,
        description="with S3: file downloads redirect to presigned URLs, and clients may upload straight to S3",
    )
    zero_copy: bool = Field(
        default=True,
        description=(
            "files of the local store are sent by the kernel (sendfile) rather than read through "
            "Python; needs httptools and the asyncio event loop, which the server then uses"
        ),
    )
    presign_expiry_seconds: int = Field(default=900, ge=10, le=7 * 24 * 3600, description="life of a presigned URL")
    max_upload_bytes: int = Field(default=2 * 1024**3, ge=1, description="larger uploads answer 413")
    max_header_bytes: int = Field(default=16 * 1024**2, ge=1024)
    max_dataset_bytes: int = Field(default=8 * 1024**3, ge=1, description="larger dataset uploads answer 413")
    data_roots: str = Field(
        default="",
        description=(
            "folders (separated by os.pathsep) a job's data paths are relative to; the workers read the same "
            "setting. Empty: jobs name built-in sources and registered datasets only"
        ),
    )
    anonymous_read: bool = Field(default=True, description="allow reads without a token")
    page_size: int = Field(default=50, ge=1, le=1000)
    max_bridges: int = Field(default=3, ge=0, le=8, description="/paths: the longest chain of bridges searched")
    auto_evaluate: Literal["auto", "on", "off"] = Field(
        default="auto",
        description=(
            "queue evaluate jobs for the pairs a new component makes in its groups: 'auto' when a worker was "
            "heard from in the last 15 minutes (so a registry without workers queues nothing), 'on', 'off'"
        ),
    )
    auto_evaluate_pairs: int = Field(default=64, ge=1, le=10_000, description="pairs queued per new component")
    auto_evaluate_heads_per_job: int = Field(default=8, ge=1, le=256, description="heads per queued evaluate job")
    webhook_delivery: bool = Field(
        default=True, description="this process sends webhook deliveries (any number of processes may)"
    )
    webhook_timeout: float = Field(default=10.0, gt=0, le=120, description="seconds a receiver has to answer")
    webhook_max_attempts: int = Field(default=8, ge=1, le=50, description="attempts before a delivery is failed")
    webhook_retry_base: float = Field(
        default=10.0, gt=0, le=3600, description="seconds before the first retry; doubles with each attempt"
    )
    webhook_poll: float = Field(default=1.0, gt=0, le=60, description="seconds between looks for due deliveries")
    webhook_allow_private: bool = Field(
        default=False,
        description="namespace owners may subscribe receivers on private or loopback addresses (admins always may)",
    )
    max_webhooks_per_namespace: int = Field(default=20, ge=1, le=1000, description="subscriptions per namespace")
    log_format: Literal["text", "json"] = Field(default="text", description="json: one JSON object per line")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    host: str = "127.0.0.1"
    port: int = 8000
    # Concurrency: sized together (see registry/main.py for why).
    worker_threads: int = Field(
        default=40, ge=2, le=1024, description="threads for blocking work (database, files); AnyIO's default is 40"
    )
    db_pool_size: int | None = Field(
        default=None, ge=1, le=1024, description="database connections kept per process; default: worker_threads"
    )
    db_pool_timeout: float = Field(default=10.0, gt=0, le=300, description="seconds to wait for a free connection")
    max_concurrent_requests: int = Field(
        default=64, ge=1, le=100_000, description="requests handled at once; more wait for a turn"
    )
    queue_timeout: float = Field(
        default=2.0, gt=0, le=300, description="seconds a request waits for a turn before it is answered 503"
    )

    @model_validator(mode="after")
    def _check_pool(self) -> Settings:
        if self.db_pool_size is not None and self.db_pool_size < self.worker_threads:
            raise ValueError(
                f"PARTSBIN_DB_POOL_SIZE ({self.db_pool_size}) is smaller than PARTSBIN_WORKER_THREADS "
                f"({self.worker_threads}): threads would wait for database connections; lower "
                "PARTSBIN_WORKER_THREADS to at most the pool size"
            )
        return self

    @property
    def data_root_list(self) -> list[str]:
        import os

        return [p for p in self.data_roots.split(os.pathsep) if p.strip()]

    @property
    def pool_size(self) -> int:
        return self.db_pool_size or self.worker_threads

    @model_validator(mode="after")
    def _check_urls(self) -> Settings:
        url = self.resolved_storage_url
        scheme = urlparse(url).scheme
        if scheme not in ("file", "s3"):
            raise ValueError(f"PARTSBIN_STORAGE_URL must start with file:// or s3://, got {url!r}")
        if scheme == "s3" and not urlparse(url).netloc:
            raise ValueError("PARTSBIN_STORAGE_URL=s3://... needs a bucket: s3://BUCKET/optional/prefix")
        return self

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.data_dir / "blobs").resolve().as_uri()

    @property
    def staging_dir(self) -> Path:
        """Where uploads are spooled while they stream in and are checked."""
        return self.data_dir / "tmp"
