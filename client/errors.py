"""Exceptions raised by the client.

Every error the client raises for a user mistake is a :class:`PartsbinError`; leaf
errors also inherit the built-in that fits, so ``except LookupError`` works too::

    PartsbinError
    ├── InvalidName         (also ValueError)        a name, alias, digest or ref breaks the naming rules
    ├── UsageError          (also ValueError)        arguments that do not fit together
    ├── InvalidCard         (also ValueError)        a card that does not validate (each bad field named)
    ├── InvalidFile         (also ValueError)        a file that is not a safetensors component (a PyTorch pickle, ...)
    ├── MissingFile         (also FileNotFoundError) a local file or folder that is not there
    ├── NotCached           (also LookupError)       offline (PARTSBIN_OFFLINE=1) and not in the cache
    ├── OfflineMode         (also ConnectionError)   offline, and the call needs the registry
    ├── InvalidSpec         (also ValueError)        a job spec that does not validate (each bad field named)
    ├── JobFailed                                    a job that failed or was cancelled (``Job.wait``)
    ├── JobTimeout          (also TimeoutError)      ``Job.wait(timeout=...)`` gave up first
    ├── RegistryError                                the registry answered with an error
    │   ├── NotFound           (also LookupError)      404 not_found, by what was looked for:
    │   │   ├── ComponentNotFound                        a component, a group, an evaluation
    │   │   ├── JobNotFound                              a job
    │   │   ├── DatasetNotFound                          a registered dataset
    │   │   ├── UploadNotFound                           a direct upload
    │   │   └── WebhookNotFound                          a webhook subscription or delivery
    │   ├── Unauthorized       (also PermissionError)  401 / 403
    │   ├── InvalidUpload      (also ValueError)       422 invalid_upload / invalid_name / invalid_request / 413
    │   ├── Incompatible       (also ValueError)       422 incompatible; also raised locally by ``assemble``
    │   ├── Conflict                                   409; 410 upload_gone (a direct upload aborted)
    │   └── ServerError                                5xx (after retries)
    ├── DigestMismatch                               downloaded bytes do not hash to the advertised digest
    └── ConnectionFailed    (also ConnectionError)   the registry could not be reached
"""

from __future__ import annotations

from typing import Any

from partsbin.parts.errors import InvalidCard, InvalidSpec, PartsbinError
from partsbin.parts.names import InvalidName

__all__ = [
    "PartsbinError",
    "InvalidName",
    "UsageError",
    "InvalidCard",
    "InvalidFile",
    "MissingFile",
    "NotCached",
    "OfflineMode",
    "InvalidSpec",
    "JobFailed",
    "JobTimeout",
    "RegistryError",
    "NotFound",
    "ComponentNotFound",
    "JobNotFound",
    "DatasetNotFound",
    "UploadNotFound",
    "WebhookNotFound",
    "Unauthorized",
    "InvalidUpload",
    "Incompatible",
    "Conflict",
    "ServerError",
    "DigestMismatch",
    "ConnectionFailed",
    "UnvouchedRecombination",
]


class UsageError(PartsbinError, ValueError):
    pass


class InvalidFile(PartsbinError, ValueError):
    pass


class MissingFile(PartsbinError, FileNotFoundError):
    pass


class NotCached(PartsbinError, LookupError):
    pass


class OfflineMode(PartsbinError, ConnectionError):
    pass


class JobFailed(PartsbinError):
    def __init__(self, message: str, *, job: Any = None) -> None:
        super().__init__(message)
        #: The :class:`~partsbin.client.jobs.Job` as it ended.
        self.job = job


class JobTimeout(PartsbinError, TimeoutError):
    pass


class RegistryError(PartsbinError):
    def __init__(
        self, message: str, *, status_code: int | None = None, code: str | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        extra = f" [{self.status_code} {self.code}]" if self.status_code else ""
        return f"{self.message}{extra}"


class NotFound(RegistryError, LookupError):
    pass


class ComponentNotFound(NotFound):
    pass


class JobNotFound(NotFound):
    pass


class DatasetNotFound(NotFound):
    pass


class UploadNotFound(NotFound):
    pass


class WebhookNotFound(NotFound):
    pass


class Unauthorized(RegistryError, PermissionError):
    pass


class InvalidUpload(RegistryError, ValueError):
    pass


class Incompatible(RegistryError, ValueError):
    pass


class Conflict(RegistryError):
    pass


class ServerError(RegistryError):
    pass


class DigestMismatch(PartsbinError):
    pass


class ConnectionFailed(PartsbinError, ConnectionError):
    pass


class UnvouchedRecombination(UserWarning):
    """A warning: ``assemble`` of two parts that share no group and were never measured
    together on the extractor's test set (``strict=True`` refuses them instead)."""
