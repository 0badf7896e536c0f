"""Jobs from the client's side: :class:`Job` (what ``Registry.submit`` returns) and
``Registry.jobs``, the queue's HTTP API (workers claim, heartbeat and finish through it).

A job's ``result`` is its kind's result model (:mod:`partsbin.parts.jobs`): the adapt
rows, the transfer curve, the stitch accuracies, the refs it published, with
``summary()`` lines for people.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from partsbin.client._http import raise_for_status
from partsbin.client.errors import JobFailed, JobTimeout, UsageError

if TYPE_CHECKING:
    from partsbin.client.registry import Registry
    from partsbin.parts.jobs import JobResult

__all__ = ["Job", "JobsAPI", "TERMINAL"]

TERMINAL = ("succeeded", "failed", "cancelled")


class Job:
    """A job in the registry's queue, as last read (:meth:`refresh` reads it again)."""

    def __init__(self, registry: Registry, data: dict[str, Any]) -> None:
        self._registry = registry
        self.raw: dict[str, Any] = data

    def __repr__(self) -> str:
        return f"Job({self.id}, kind={self.kind!r}, status={self.status!r})"

    @property
    def id(self) -> int:
        return int(self.raw["id"])

    @property
    def kind(self) -> str:
        return str(self.raw.get("kind") or self.raw["spec"].get("kind", "train"))

    @property
    def status(self) -> str:
        return str(self.raw["status"])

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.raw["spec"])

    @property
    def progress(self) -> dict[str, Any] | None:
        return self.raw.get("progress")

    @property
    def error(self) -> str | None:
        return self.raw.get("error")

    @property
    def refs(self) -> builtins.list[str]:
        """What the job published (empty until it succeeds)."""
        return list(self.raw.get("result_refs") or [])

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def result(self) -> JobResult:
        """The kind's result model (``AdaptResult``, ``TransferResult``, ...).

        Raises:
            UsageError: the job has not succeeded (yet): :meth:`wait` for it.
        """
        from partsbin.parts.jobs import parse_job_result

        if self.status != "succeeded" or self.raw.get("result") is None:
            raise UsageError(f"job {self.id} is {self.status}: it has no result (wait for it with Job.wait())")
        return parse_job_result(self.kind, self.raw["result"])

    def refresh(self) -> Job:
        """Read the job again from the registry. Returns this job."""
        self.raw = self._registry.jobs.get(self.id)
        return self

    def cancel(self) -> Job:
        """Cancel it: a queued job ends at once, a running one within seconds. Returns this job."""
        self.raw = self._registry.jobs.cancel(self.id)
        return self

    def wait(
        self,
        *,
        timeout: float | None = None,
        poll_seconds: float = 1.0,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Follow the job until it ends.

        Args:
            timeout: give up after this many seconds (the job goes on).
            poll_seconds: how often to ask the registry.
            on_progress: called with the job after each read (a progress bar's update).

        Returns:
            This job, succeeded: ``job.result`` holds what it measured and published.

        Raises:
            JobFailed: the job failed or was cancelled; the message is its error.
            JobTimeout: ``timeout`` passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if on_progress is not None:
                on_progress(self)
            if self.done:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise JobTimeout(f"job {self.id} is still {self.status} after {timeout:g} s")
            time.sleep(poll_seconds)
            self.refresh()
        if self.status != "succeeded":
            raise JobFailed(f"{self.kind} job {self.id} {self.status}: {self.error or self.status}", job=self)
        return self


class JobsAPI:
    """The queue's HTTP routes (``/jobs``), as the CLI and the worker use them."""

    def __init__(self, registry: Registry) -> None:
        self._r = registry

    def submit(self, spec: dict[str, Any], max_attempts: int = 3) -> dict[str, Any]:
        return self._r._send("POST", "/jobs", json={"spec": spec, "max_attempts": max_attempts})

    def list(self, status: str | None = None, kind: str | None = None) -> builtins.list[dict[str, Any]]:
        return list(self._r._pages("/jobs", status=status, kind=kind))

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
        self,
        job_id: int,
        lease_id: str,
        refs: builtins.list[str],
        progress: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"lease_id": lease_id, "refs": refs}
        if progress is not None:
            body["progress"] = progress
        if result is not None:
            body["result"] = result
        return self._r._send("POST", f"/jobs/{job_id}/complete", json=body)

    def fail(
        self, job_id: int, lease_id: str, error: str, retry: bool = False, detail: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"lease_id": lease_id, "error": error[:2000], "retry": retry}
        if detail is not None:
            body["detail"] = detail[-20000:]
        return self._r._send("POST", f"/jobs/{job_id}/fail", json=body)

    def release(self, job_id: int, lease_id: str) -> dict[str, Any]:
        return self._r._send("POST", f"/jobs/{job_id}/release", json={"lease_id": lease_id})
