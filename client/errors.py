"""Exceptions raised by the client.

::

    PartsbinError
    ├── RegistryError                 the registry answered with an error
    │   ├── ComponentNotFound         (also LookupError)   404 not_found
    │   ├── Unauthorized              (also PermissionError) 401 / 403
    │   ├── InvalidUpload             (also ValueError)   422 invalid_upload / invalid_name / invalid_request / 413
    │   ├── Incompatible              (also ValueError)   422 incompatible
    │   ├── Conflict                                      409
    │   └── ServerError                                   5xx (after retries)
    ├── Incompatible                  also raised locally by ``assemble``
    ├── DigestMismatch                downloaded bytes do not hash to the advertised digest
    └── ConnectionFailed              (also ConnectionError) the registry could not be reached
"""

from __future__ import annotations

__all__ = [
    "PartsbinError",
    "RegistryError",
    "ComponentNotFound",
    "Unauthorized",
    "InvalidUpload",
    "Incompatible",
    "Conflict",
    "ServerError",
    "DigestMismatch",
    "ConnectionFailed",
]


class PartsbinError(Exception):
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


class ComponentNotFound(RegistryError, LookupError):
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
