"""Pushing straight to the registry's S3 bucket (the registry's ``/uploads`` routes).

The file is hashed here first (the registry checks the sha256 it is told against the
bytes that arrive), its parts are PUT to presigned URLs, and the registry is asked to
check and record the result. A registry whose storage clients cannot reach answers 409
``direct_upload_unavailable``, and the push goes through the registry instead.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from partsbin.client import ranged
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


def _put_parts(
    s3: httpx.Client, path: Path, urls: list[str], part_size: int, advance: Callable[[int], None]
) -> list[str]:
    """PUT each part to its presigned URL, up to ``ranged.CONNECTIONS`` at once (as the
    ranged pull reads them: one Python connection is bound by its receive/send loop, not
    by the network); the ETags in part order."""
    lock = threading.Lock()

    def one(number: int, url: str) -> str:
        with path.open("rb") as fh:  # a handle per part: threads do not share a file position
            fh.seek((number - 1) * part_size)
            data = fh.read(part_size)

        def put() -> httpx.Response:
            answer = s3.put(url, content=data)
            if answer.status_code >= 400:
                raise RegistryError(
                    f"the storage refused part {number} of the upload: HTTP {answer.status_code} {answer.text[:200]}",
                    status_code=503 if answer.status_code >= 500 else answer.status_code,
                    code="storage_refused",
                )
            return answer

        etag = with_retries(put).headers["etag"]
        with lock:
            advance(len(data))
        return etag

    workers = min(ranged.CONNECTIONS, len(urls))
    if workers <= 1:
        return [one(number, url) for number, url in enumerate(urls, start=1)]
    pool = ThreadPoolExecutor(workers, thread_name_prefix="partsbin-put")
    try:
        futures = [pool.submit(one, number, url) for number, url in enumerate(urls, start=1)]
        return [f.result() for f in futures]
    finally:
        # On an error (or Ctrl-C) the parts not yet started are dropped; the caller aborts
        # the upload, which removes what was staged.
        pool.shutdown(wait=True, cancel_futures=True)


def push_direct(
    registry: Registry, path: Path, card_json: str | None, advance: Callable[[int], None]
) -> httpx.Response | None:
    """Push ``path`` through S3; None when the registry does not offer it (then push
    through the registry)."""
    size = path.stat().st_size
    # Parts of the ranged pull's piece size, so that a file of a few pieces still goes up
    # over several connections (the registry raises it for files of more than MAX_PARTS).
    body = {"size": size, "sha256": _sha256(path), "part_size": ranged.PIECE}
    try:
        started = raise_for_status(registry._http.post("/uploads", json=body))
    except httpx.TransportError as exc:
        raise transport_error(exc) from exc
    except RegistryError as exc:
        if exc.code == "direct_upload_unavailable":
            return None
        raise
    plan: dict[str, Any] = started.json()
    upload, multipart, part_size = plan["upload_id"], plan["multipart_id"], plan["part_size"]
    try:
        # Presigned URLs carry their own signature: no registry token goes to S3.
        with httpx.Client(timeout=registry._http.timeout) as s3:
            etags = _put_parts(s3, path, plan["urls"], part_size, advance)
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
