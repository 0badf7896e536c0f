"""``Registry.adapt`` and ``Registry.transfer``: the paper's applications (§5.1, §5.3) as jobs.

Each submits a job of its kind to the registry's queue (a worker runs it: the client does
not train), waits for it unless ``wait=False``, and answers what it published and
measured, read back from the registry: the job, its refs, and the evaluations it posted.
"""

from __future__ import annotations

import builtins
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from partsbin.client.errors import UsageError

if TYPE_CHECKING:
    from partsbin.client.registry import Registry

__all__ = ["AdaptResult", "TransferResult", "adapt", "transfer"]


@dataclass
class AdaptResult:
    job: dict[str, Any]
    #: The adapted extractor's ref (None until the job succeeds, or with publish=False).
    adapted: str | None = None
    #: Table 2's rows ("as-is", "test-bn", "recalibrated", "adapted") → accuracy on the target test set.
    rows: dict[str, float] = field(default_factory=dict)


@dataclass
class TransferResult:
    job: dict[str, Any]
    #: (finetune_steps, accuracy) in order of steps, as posted.
    curve: builtins.list[tuple[int, float]] = field(default_factory=list)
    evaluations: builtins.list[dict[str, Any]] = field(default_factory=list)
    refs: builtins.list[str] = field(default_factory=list)


def _data(data: Any) -> dict[str, Any] | None:
    if data is None:
        return None
    if hasattr(data, "model_dump"):
        return data.model_dump(mode="json")
    if isinstance(data, dict):
        return data
    raise UsageError(f"a data spec is a mapping or a DataSpec, got {type(data).__name__}")


def _namespace(registry: Registry, namespace: str | None, extractor: str) -> str:
    if namespace is not None:
        return namespace
    me = registry.whoami()
    return me["namespaces"][0] if me["namespaces"] else extractor.partition("/")[0]


def _name(ref: str, suffix: str) -> str:
    short = ref.partition("/")[2].split("@")[0].split(":")[0] or "part"
    return (short.removesuffix("-extractor") + suffix)[:64]


def _submit_and_wait(registry: Registry, spec: dict[str, Any], wait: bool, poll_seconds: float) -> dict[str, Any]:
    """Submit ``spec``; with ``wait``, follow the job until it ends. One that failed or was
    cancelled raises :class:`ServerError` naming it and its error."""
    from partsbin.client.errors import ServerError

    registry.check_can_publish(spec["namespace"], f"submitting a {spec['kind']} job into {spec['namespace']!r}")
    job = registry.jobs.submit(spec)
    while wait and job["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(poll_seconds)
        job = registry.jobs.get(job["id"])
    if job["status"] in ("failed", "cancelled"):
        last = (job.get("error") or "").strip().splitlines()[-1:] or [job["status"]]
        raise ServerError(f"{spec['kind']} job {job['id']} {job['status']}: {last[0]}")
    return job


def _posted_by(registry: Registry, extractor: str, job_id: int) -> builtins.list[dict[str, Any]]:
    return [
        ev
        for ev in registry.evaluations(extractor=extractor)
        if str((ev.get("details") or {}).get("job")) == str(job_id)
    ]


def adapt(
    registry: Registry,
    extractor: str,
    rp_head: str,
    data: Any,
    *,
    steps: int = 1000,
    test: Any = None,
    head: str | None = None,
    name: str | None = None,
    namespace: str | None = None,
    settings: dict[str, Any] | None = None,
    evaluate: bool = True,
    wait: bool = True,
    poll_seconds: float = 1.0,
) -> AdaptResult:
    """Adapt ``extractor`` to the unlabelled images of ``data`` through its frozen RP head."""
    ext = registry.info(extractor).ref
    spec: dict[str, Any] = {
        "kind": "adapt",
        "name": name or _name(ext, "-adapted"),
        "namespace": _namespace(registry, namespace, ext),
        "extractor": ext,
        "rp_head": registry.info(rp_head).ref,
        "data": _data(data),
        "test": _data(test),
        "head": registry.info(head).ref if head else None,
        # The spec fills what is not given with adapt's defaults (AdaptSpec).
        "settings": {"steps": steps, **(settings or {})},
        "evaluate": evaluate,
    }
    job = _submit_and_wait(registry, spec, wait, poll_seconds)
    result = AdaptResult(job)
    if job["status"] != "succeeded":
        return result
    result.adapted = job["result_refs"][0] if job["result_refs"] else None
    for ev in _posted_by(registry, ext, job["id"]) + (
        _posted_by(registry, result.adapted, job["id"]) if result.adapted else []
    ):
        row = (ev.get("details") or {}).get("uda")
        if row:
            result.rows[row] = ev["value"]
    return result


def transfer(
    registry: Registry,
    extractor: str,
    head: str,
    data: Any,
    *,
    steps: builtins.list[int] | tuple[int, ...] = (0,),
    test: Any = None,
    name: str | None = None,
    namespace: str | None = None,
    settings: dict[str, Any] | None = None,
    publish: bool = False,
    wait: bool = True,
    poll_seconds: float = 1.0,
) -> TransferResult:
    """Recombine ``extractor`` with ``head``, fine-tune on ``data``, measure after each of ``steps``."""
    ext = registry.info(extractor).ref
    spec = {
        "kind": "transfer",
        "name": name or _name(ext, "-transfer"),
        "namespace": _namespace(registry, namespace, ext),
        "extractor": ext,
        "head": registry.info(head).ref,
        "data": _data(data),
        "test": _data(test),
        "steps": list(steps),
        "settings": dict(settings or {}),
        "publish": publish,
    }
    job = _submit_and_wait(registry, spec, wait, poll_seconds)
    result = TransferResult(job)
    if job["status"] != "succeeded":
        return result
    result.refs = list(job["result_refs"])
    result.evaluations = sorted(_posted_by(registry, ext, job["id"]), key=lambda ev: ev["finetune_steps"])
    result.curve = [(ev["finetune_steps"], ev["value"]) for ev in result.evaluations]
    return result
