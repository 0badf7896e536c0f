"""partsbin client: ``from client import Registry``."""

from .assemble import AssembledModel
from .errors import (
    ComponentNotFound,
    Conflict,
    ConnectionFailed,
    DigestMismatch,
    Incompatible,
    InvalidUpload,
    PartsbinError,
    RegistryError,
    ServerError,
    Unauthorized,
)
from .registry import Component, Registry

__all__ = [
    "Registry", "Component", "AssembledModel",
    "PartsbinError", "RegistryError", "ComponentNotFound", "Unauthorized", "InvalidUpload",
    "Incompatible", "Conflict", "ServerError", "DigestMismatch", "ConnectionFailed",
]  # fmt: skip
