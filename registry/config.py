"""Registry settings, read from ``PARTSBIN_*`` environment variables."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARTSBIN_", extra="ignore")

    data_dir: Path = Field(default=Path("./partsbin-data"), description="embedded default: SQLite file and blob folder")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite under data_dir")
    storage_url: str | None = Field(
        default=None, description="file:///path or s3://bucket/prefix; default data_dir/blobs"
    )
    s3_endpoint_url: str | None = Field(default=None, description="for S3-compatible servers (SeaweedFS, MinIO)")
    max_upload_bytes: int = Field(default=2 * 1024**3, ge=1, description="larger uploads answer 413")
    max_header_bytes: int = Field(default=16 * 1024**2, ge=1024)
    anonymous_read: bool = Field(default=True, description="allow reads without a token")
    page_size: int = Field(default=50, ge=1, le=1000)
    log_format: Literal["text", "json"] = Field(default="text", description="json: one JSON object per line")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    host: str = "127.0.0.1"
    port: int = 8000

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
