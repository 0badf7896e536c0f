"""``Registry.jobs``: the training job queue over HTTP."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

from partsbin.client._http import raise_for_status

if TYPE_CHECKING:
    from partsbin.client.registry import Registry

__all__ = ["JobsAPI"]


class JobsAPI:
    def __init__(self, registry: Registry) -> None:
        self._r = registry

    def submit(self, spec: dict[str, Any], max_attempts: int = 3) -> dict[str, Any]:
        return self._r._send("POST", "/jobs", json={"spec": spec, "max_attempts": max_attempts})

    def list(self, status: str | None = None) -> builtins.list[dict[str, Any]]:
        return list(self._r._pages("/jobs", status=status))

    def get(self, job_id: int) -> dict[str, Any]:
        return self._r._get(f"/jobs/{job_id}")

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._r._send("POST", f"/jobs/{job_id}/cancel")

    # -- worker side ------------------------------------------------------------------------
    def claim(self, worker: str, lease_seconds: float) -> dict[str, Any] | None:
        response = raise_for_status(
            self._r._http.post("/jobs/claim", json={"worker": worker, "lease_seconds": lease_seconds})
        )
        return None if response.status_code == 204 else response.json()

    def heartbeat(
        self, job_id: int, lease_id: str, lease_seconds: float, progress: dict[str, Any] | None
    ) -> dict[str, Any]:
        return self._r._send(
            "POST",
            f"/jobs/{job_id}/heartbeat",
            json={"lease_id": lease_id, "lease_seconds": lease_seconds, "progress": progress},
        )

    def complete(
        self, job_id: int, lease_id: str, refs: builtins.list[str], progress: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"lease_id": lease_id, "refs": refs}
        if progress is not None:
            body["progress"] = progress
        return self._r._send("POST", f"/jobs/{job_id}/complete", json=body)

    def fail(self, job_id: int, lease_id: str, error: str, retry: bool = False) -> dict[str, Any]:
        return self._r._send(
            "POST", f"/jobs/{job_id}/fail", json={"lease_id": lease_id, "error": error[-20000:], "retry": retry}
        )

    def release(self, job_id: int, lease_id: str) -> dict[str, Any]:
        return self._r._send("POST", f"/jobs/{job_id}/release", json={"lease_id": lease_id})
