"""Pushing straight to the registry's S3 bucket (the registry's ``/uploads`` routes).

The file is hashed here first (the registry checks the sha256 it is told against the
bytes that arrive), its parts are PUT to presigned URLs, and the registry is asked to
check and record the result. A registry whose storage clients cannot reach answers 409
``direct_upload_unavailable``, and the push goes through the registry instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from partsbin.client._http import raise_for_status, transport_error, with_retries
from partsbin.client.errors import RegistryError

if TYPE_CHECKING:
    from partsbin.client.registry import Registry

__all__ = ["DIRECT_THRESHOLD", "push_direct"]

#: Files from this size go straight to S3 when the registry offers it; smaller ones cost
#: more in round trips than they save.
DIRECT_THRESHOLD = 16 * 1024**2
_READ = 8 * 1024**2


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_READ):
            h.update(chunk)
    return h.hexdigest()


def push_direct(
    registry: Registry, path: Path, card_json: str | None, advance: Callable[[int], None]
) -> httpx.Response | None:
    """Push ``path`` through S3; None when the registry does not offer it (then push
    through the registry)."""
    size = path.stat().st_size
    try:
        started = raise_for_status(registry._http.post("/uploads", json={"size": size, "sha256": _sha256(path)}))
    except httpx.TransportError as exc:
        raise transport_error(exc) from exc
    except RegistryError as exc:
        if exc.code == "direct_upload_unavailable":
            return None
        raise
    plan: dict[str, Any] = started.json()
    upload, multipart, part_size = plan["upload_id"], plan["multipart_id"], plan["part_size"]
    etags: list[str] = []
    try:
        # Presigned URLs carry their own signature: no registry token goes to S3.
        with httpx.Client(timeout=registry._http.timeout) as s3, path.open("rb") as fh:
            for number, url in enumerate(plan["urls"], start=1):
                fh.seek((number - 1) * part_size)
                data = fh.read(part_size)

                def put(data: bytes = data, url: str = url, number: int = number) -> httpx.Response:
                    answer = s3.put(url, content=data)
                    if answer.status_code >= 400:
                        raise RegistryError(
                            f"the storage refused part {number} of the upload: HTTP {answer.status_code} "
                            f"{answer.text[:200]}",
                            status_code=503 if answer.status_code >= 500 else answer.status_code,
                            code="storage_refused",
                        )
                    return answer

                etags.append(with_retries(put).headers["etag"])
                advance(len(data))
        return raise_for_status(
            registry._http.post(
                f"/uploads/{upload}/complete",
                json={"multipart_id": multipart, "etags": etags, "card": card_json},
                timeout=registry._push_timeout(size),
            )
        )
    except BaseException as exc:
        try:  # the registry removes what it staged; gc does it later if this fails too
            registry._http.post(f"/uploads/{upload}/abort", json={"multipart_id": multipart})
        except (httpx.HTTPError, RegistryError):
            pass
        if isinstance(exc, httpx.TransportError):
            # The registry (or the storage) went away mid-push: the client's own error, naming where.
            raise transport_error(exc) from exc
        raise
