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
from typing import TYPE_CHECKING, Any, cast

from partsbin.client._http import raise_for_status
from partsbin.client.errors import JobFailed, JobTimeout, UsageError

if TYPE_CHECKING:
    from partsbin.client.registry import Registry
    from partsbin.parts.jobs import JobResult, JobSpec

__all__ = ["Job", "JobsAPI", "JobMethods", "TERMINAL"]

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


class JobMethods:
    """``Registry``'s job methods: :meth:`submit` for any kind, and one method per kind
    that builds its spec from keyword arguments. Every one returns a :class:`Job`."""

    if TYPE_CHECKING:
        jobs: JobsAPI

        def check_can_publish(self, namespace: str | None, action: str) -> None: ...

    def submit(
        self,
        spec: dict[str, Any] | JobSpec,
        *,
        max_attempts: int = 3,
        wait: bool = False,
        timeout: float | None = None,
        poll_seconds: float = 1.0,
    ) -> Job:
        """Submit a job of any kind to the registry's queue; a worker runs it.

        Args:
            spec: the job spec (a mapping or a spec model), of any kind ``partsbin train
                --schema`` lists; checked here first, so a bad field is named at once.
            max_attempts: how many times a job whose worker died or lost it is retried.
            wait: follow the job until it ends (:meth:`Job.wait`).
            timeout: with ``wait``, give up after this many seconds.
            poll_seconds: with ``wait``, how often to ask.

        Returns:
            The :class:`~partsbin.client.jobs.Job`; succeeded (``job.result`` set) with ``wait``.

        Raises:
            InvalidSpec: the spec does not validate (each bad field named).
            Unauthorized: the token may not publish into the spec's namespace.
            InvalidUpload: the registry refused it (a path outside its data roots, a limit exceeded).
            JobFailed: with ``wait``, the job failed or was cancelled.
        """
        from partsbin.parts.jobs import parse_job_spec

        parsed = parse_job_spec(spec)
        self.check_can_publish(parsed.namespace, f"submitting a {parsed.kind} job into {parsed.namespace!r}")
        job = Job(cast("Registry", self), self.jobs.submit(parsed.model_dump(mode="json"), max_attempts))
        return job.wait(timeout=timeout, poll_seconds=poll_seconds) if wait else job

    def job(self, job_id: int) -> Job:
        """The job ``job_id``, as the registry has it now.

        Raises:
            JobNotFound: no such job.
        """
        return Job(cast("Registry", self), self.jobs.get(job_id))

    def adapt(
        self,
        extractor: str,
        rp_head: str,
        data: Any,
        *,
        test: Any = None,
        head: str | None = None,
        steps: int | None = None,
        settings: dict[str, Any] | None = None,
        name: str | None = None,
        namespace: str | None = None,
        evaluate: bool = True,
        wait: bool = True,
        poll_seconds: float = 1.0,
    ) -> Job:
        """Adapt ``extractor`` to the unlabelled images of ``data`` through its frozen RP
        head (paper §5.1), as an ``adapt`` job.

        Args:
            extractor: ref of the source extractor.
            rp_head: ref of the RP aux head it was trained against.
            data: the target images (a data spec: mapping or ``DataSpec``).
            test: labelled target test data (default: ``data``'s test split).
            head: the source task head the rows are measured with (default: the extractor's sibling).
            steps: adaptation steps (default 1000); ``settings`` sets the others.
            name, namespace: what the adapted extractor is published as (default: after the extractor).
            evaluate: measure Table 2's rows.
            wait: follow the job until it ends.

        Returns:
            The job; ``job.result`` is an ``AdaptResult`` (``rows``, ``adapted``).

        Raises:
            InvalidSpec, Unauthorized, JobFailed: as :meth:`submit`.
        """
        spec = {
            "kind": "adapt",
            "name": name,
            "namespace": namespace,
            "extractor": extractor,
            "rp_head": rp_head,
            "data": _data(data),
            "test": _data(test),
            "head": head,
            "evaluate": evaluate,
            "settings": {**(settings or {}), **({"steps": steps} if steps is not None else {})},
        }
        return self.submit(_given(spec), wait=wait, poll_seconds=poll_seconds)

    def transfer(
        self,
        extractor: str,
        head: str,
        data: Any,
        *,
        steps: builtins.list[int] | tuple[int, ...] = (0,),
        test: Any = None,
        settings: dict[str, Any] | None = None,
        name: str | None = None,
        namespace: str | None = None,
        publish: bool = False,
        wait: bool = True,
        poll_seconds: float = 1.0,
    ) -> Job:
        """Recombine ``extractor`` with ``head``, fine-tune on ``data``, and measure after
        each count of ``steps`` (paper §5.3), as a ``transfer`` job.

        Returns:
            The job; ``job.result`` is a ``TransferResult`` (``curve``).

        Raises:
            InvalidSpec, Unauthorized, JobFailed: as :meth:`submit`.
        """
        spec = {
            "kind": "transfer",
            "name": name,
            "namespace": namespace,
            "extractor": extractor,
            "head": head,
            "data": _data(data),
            "test": _data(test),
            "steps": list(steps),
            "settings": dict(settings or {}),
            "publish": publish,
        }
        return self.submit(_given(spec), wait=wait, poll_seconds=poll_seconds)

    def stitch(
        self,
        extractor: str,
        head: str,
        name: str,
        *,
        method: str = "trained",
        data: Any = None,
        test: Any = None,
        steps: int | None = None,
        to_group: bool = False,
        target_extractor: str | None = None,
        settings: dict[str, Any] | None = None,
        wait: bool = False,
        poll_seconds: float = 1.0,
    ) -> Job:
        """An adapter ``name`` (``NAMESPACE/NAME``) from ``extractor``'s features to ``head``,
        both frozen, as a ``stitch`` job: ``method`` "trained", "least-squares" or "procrustes".

        Returns:
            The job; ``job.result`` is a ``StitchResult`` (with and without the adapter).

        Raises:
            UsageError: ``name`` is not NAMESPACE/NAME. InvalidSpec, Unauthorized, JobFailed: as :meth:`submit`.
        """
        namespace, short = _split_name(name, "adapter")
        spec = {
            "kind": "stitch",
            "name": short,
            "namespace": namespace,
            "extractor": extractor,
            "head": head,
            "method": method,
            "bridge_to": "group" if to_group else "head",
            "target_extractor": target_extractor,
            "data": _data(data),
            "test": _data(test),
            "settings": {**(settings or {}), **({"steps": steps} if steps is not None else {})},
        }
        return self.submit(_given(spec), wait=wait, poll_seconds=poll_seconds)

    def fct(
        self,
        old_extractor: str,
        new_extractor: str,
        name: str,
        *,
        space: str = "embedding",
        side_info: bool | str = True,
        data: Any = None,
        test: Any = None,
        new_head: str | None = None,
        images: int | None = None,
        steps: int | None = None,
        settings: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        wait: bool = False,
        poll_seconds: float = 1.0,
    ) -> Job:
        """A Forward Compatible Training transform ``name`` (``NAMESPACE/NAME``) from
        ``old_extractor``'s features to ``new_extractor``'s, as an ``fct`` job: with a
        side-info model trained on the old data (``side_info=True``), a stored one (its
        ref) or none; ``space`` "embedding" (a stored gallery, :meth:`transform_gallery`)
        or "junction" (for the new head: ``assemble(old, new_head, via=[transform])``).
        ``options``: the spec's other fields (``hidden``, ``side_dim``...).

        Returns:
            The job; ``job.result`` is an ``FCTResult`` (retrieval, classification).

        Raises:
            UsageError: ``name`` is not NAMESPACE/NAME. InvalidSpec, Unauthorized, JobFailed: as :meth:`submit`.
        """
        namespace, short = _split_name(name, "transform")
        spec = {
            **(options or {}),
            "kind": "fct",
            "name": short,
            "namespace": namespace,
            "old_extractor": old_extractor,
            "new_extractor": new_extractor,
            "space": space,
            "side_info": side_info,
            "new_head": new_head,
            "images": images,
            "data": _data(data),
            "test": _data(test),
            "settings": {**(settings or {}), **({"steps": steps} if steps is not None else {})},
        }
        return self.submit(_given(spec), wait=wait, poll_seconds=poll_seconds)

    def update_head(
        self,
        head: str,
        reference_extractor: str,
        *,
        data: Any,
        classes: builtins.list[str],
        test: Any = None,
        reference_bn: str = "batch",
        train_layers: str = "all",
        settings: dict[str, Any] | None = None,
        wait: bool = True,
        poll_seconds: float = 1.0,
    ) -> Job:
        """Extend ``head`` to ``classes``, fine-tuned on ``data`` through the frozen
        ``reference_extractor``, published as the head's next version (paper §5.2), as an
        ``update-head`` job.

        Returns:
            The job; ``job.result`` is an ``UpdateHeadResult`` and ``job.refs[0]`` the new version.

        Raises:
            InvalidSpec, Unauthorized, JobFailed: as :meth:`submit`.
        """
        spec = {
            "kind": "update-head",
            "head": head,
            "reference_extractor": reference_extractor,
            "data": _data(data),
            "test": _data(test),
            "classes": list(classes),
            "reference_bn": reference_bn,
            "train_layers": train_layers,
            "settings": dict(settings or {}),
        }
        return self.submit(_given(spec), wait=wait, poll_seconds=poll_seconds)


def _data(data: Any) -> dict[str, Any] | None:
    """A data spec as the job spec takes it (a ``DataSpec`` is dumped)."""
    if data is None or isinstance(data, dict):
        return data
    if hasattr(data, "model_dump"):
        return dict(data.model_dump(mode="json", exclude_none=True))
    raise UsageError(f"a data spec is a mapping or a DataSpec, got {type(data).__name__}")


def _given(spec: dict[str, Any]) -> dict[str, Any]:
    """The fields given: a None leaves the kind's default (and an empty settings too)."""
    return {k: v for k, v in spec.items() if v is not None and v != {}}


def _split_name(name: str, what: str) -> tuple[str, str]:
    if "/" not in name:
        raise UsageError(f"name the {what} NAMESPACE/NAME, not {name!r}")
    namespace, short = name.split("/", 1)
    return namespace, short
