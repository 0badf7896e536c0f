"""partsbin: a registry and model zoo of neural-network components made compatible by
training (Gygli, Uijlings & Ferrari, AAAI 2021).

::

    from partsbin import Registry

    reg = Registry()                                   # PARTSBIN_URL / PARTSBIN_TOKEN
    model = reg.assemble("acme/a-extractor", "acme/b-head")

The subpackages: :mod:`partsbin.client` (this API), :mod:`partsbin.registry` (the
service), :mod:`partsbin.trainer` (training and the worker), :mod:`partsbin.parts` (the
shared core) and :mod:`partsbin.migrations`. See ``docs/architecture.md``.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import TYPE_CHECKING, Any

# Imported straight from a source checkout (its root first on sys.path: `python -m pytest`
# or `python -c` there), this folder holds only the CLI; the other subpackages are the
# checkout's top-level folders, as the wheel and the strict editable install's link tree
# lay them out under partsbin/ (docs/architecture.md).
_checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not os.path.isdir(os.path.join(os.path.dirname(__file__), "registry")) and os.path.isfile(
    os.path.join(_checkout, "registry", "__init__.py")
):
    __path__.append(_checkout)

#: The distribution's version too (pyproject.toml reads it from here).
__version__ = "0.2.0"

# Imported on first use: `import partsbin` (and so `partsbin --help`) must not pay for
# torch, which the client needs only once a module is built or run.
_EXPORTS = {
    "Registry": "partsbin.client.registry",
    "Component": "partsbin.client.component",
    "AssembledModel": "partsbin.client.assemble",
    "Job": "partsbin.client.jobs",
    "PartsbinError": "partsbin.client.errors",
    "InvalidName": "partsbin.client.errors",
    "UsageError": "partsbin.client.errors",
    "InvalidCard": "partsbin.client.errors",
    "InvalidFile": "partsbin.client.errors",
    "MissingFile": "partsbin.client.errors",
    "NotCached": "partsbin.client.errors",
    "OfflineMode": "partsbin.client.errors",
    "InvalidSpec": "partsbin.client.errors",
    "JobFailed": "partsbin.client.errors",
    "JobTimeout": "partsbin.client.errors",
    "RegistryError": "partsbin.client.errors",
    "ComponentNotFound": "partsbin.client.errors",
    "UploadNotFound": "partsbin.client.errors",
    "DatasetNotFound": "partsbin.client.errors",
    "JobNotFound": "partsbin.client.errors",
    "WebhookNotFound": "partsbin.client.errors",
    "Webhook": "partsbin.client.webhooks",
    "WebhookDelivery": "partsbin.client.webhooks",
    "verify_signature": "partsbin.parts.webhook_signature",
    "NotFound": "partsbin.client.errors",
    "Unauthorized": "partsbin.client.errors",
    "InvalidUpload": "partsbin.client.errors",
    "Incompatible": "partsbin.client.errors",
    "Conflict": "partsbin.client.errors",
    "ServerError": "partsbin.client.errors",
    "DigestMismatch": "partsbin.client.errors",
    "ConnectionFailed": "partsbin.client.errors",
    "UnvouchedRecombination": "partsbin.client.errors",
}

__all__ = [
    "__version__",
    "Registry",
    "Component",
    "AssembledModel",
    "Job",
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
    "ComponentNotFound",
    "UploadNotFound",
    "DatasetNotFound",
    "JobNotFound",
    "WebhookNotFound",
    "Webhook",
    "WebhookDelivery",
    "verify_signature",
    "NotFound",
    "Unauthorized",
    "InvalidUpload",
    "Incompatible",
    "Conflict",
    "ServerError",
    "DigestMismatch",
    "ConnectionFailed",
    "UnvouchedRecombination",
]

if TYPE_CHECKING:
    from partsbin.client.assemble import AssembledModel
    from partsbin.client.component import Component
    from partsbin.client.errors import (
        ComponentNotFound,
        Conflict,
        ConnectionFailed,
        DatasetNotFound,
        DigestMismatch,
        Incompatible,
        InvalidCard,
        InvalidFile,
        InvalidName,
        InvalidSpec,
        InvalidUpload,
        JobFailed,
        JobNotFound,
        JobTimeout,
        MissingFile,
        NotCached,
        NotFound,
        OfflineMode,
        PartsbinError,
        RegistryError,
        ServerError,
        Unauthorized,
        UnvouchedRecombination,
        UploadNotFound,
        UsageError,
        WebhookNotFound,
    )
    from partsbin.client.jobs import Job
    from partsbin.client.registry import Registry
    from partsbin.client.webhooks import Webhook, WebhookDelivery
    from partsbin.parts.webhook_signature import verify_signature


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'partsbin' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
