"""The distributed benchmark: the matrix split into ``evaluate`` jobs that workers take
from the registry's queue, and the result assembled from the evaluations they post."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from partsbin.client.bench_result import BenchResult, Cell
from partsbin.client.errors import UsageError

if TYPE_CHECKING:
    from partsbin.client.bench import BenchBN
    from partsbin.client.registry import Registry
    from partsbin.parts.evaluation import BatchComposition

__all__ = ["bench_distributed"]


def bench_distributed(
    registry: Registry,
    extractors: list[str],
    heads: list[str],
    *,
    bn_mode: BenchBN,
    batch_size: int,
    batch_composition: BatchComposition,
    shuffle_seed: int,
    threads: int | None,
    heads_per_job: int,
    namespace: str | None,
    poll_seconds: float,
) -> BenchResult:
    from partsbin.client.errors import ServerError

    if heads_per_job < 1:
        raise UsageError("heads_per_job must be at least 1")
    me = registry.whoami()
    if namespace is None:
        namespace = me["namespaces"][0] if me["namespaces"] else extractors[0].partition("/")[0]
    registry.check_can_publish(namespace, f"submitting evaluation jobs into namespace {namespace!r}")
    # Exact versions, so that every job measures the same components however the latest moves.
    exts = [registry.info(r).ref for r in extractors]
    hds = [registry.info(r).ref for r in heads]
    jobs: dict[int, tuple[str, list[str]]] = {}
    for e in exts:
        for start in range(0, len(hds), heads_per_job):
            chunk = hds[start : start + heads_per_job]
            spec = {
                "kind": "evaluate",
                "name": f"bench-{e.replace('/', '-').replace('@', '-v')}"[:64],
                "namespace": namespace,
                "extractor": e,
                "heads": chunk,
                "bn_mode": bn_mode,
                "batch_composition": batch_composition,
                "shuffle_seed": shuffle_seed,
                "settings": {"eval_batch_size": batch_size, **({"threads": threads} if threads else {})},
            }
            jobs[registry.submit(spec).id] = (e, chunk)
    _wait_for_jobs(registry, list(jobs), poll_seconds)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for e in exts:
        for ev in registry.evaluations(extractor=e):
            job = str((ev.get("details") or {}).get("job"))
            if job.isdigit() and int(job) in jobs:
                found[(ev["extractor"], ev["head"])] = ev
    cells = []
    for e, chunk in jobs.values():
        for h in chunk:
            posted = found.get((e, h))
            if posted is None:
                # Not posted: the pair shares no class (the worker measured nothing).
                cells.append(Cell(e, h, 0.0, 0.0, 0, (0.0, 1.0), False))
                continue
            ev = posted
            d = ev.get("details") or {}
            ci = d.get("ci95") or [0.0, 1.0]
            cells.append(
                Cell(
                    e,
                    h,
                    ev["value"],
                    float(d.get("unrestricted", ev["value"])),
                    ev["samples"],
                    (ci[0], ci[1]),
                    bool(d.get("own_task")),
                    dataset=ev["dataset"],
                    evaluation_id=ev["id"],
                )
            )
    if len(cells) != len(exts) * len(hds):
        raise ServerError(
            f"the evaluation jobs {sorted(jobs)} left {len(exts) * len(hds) - len(cells)} cells unmeasured"
        )
    return BenchResult(
        exts,
        hds,
        bn_mode,
        batch_size,
        cells,
        batch_composition=batch_composition,
        shuffle_seed=shuffle_seed,
        threads=threads,
    )


def _wait_for_jobs(registry: Registry, ids: list[int], poll_seconds: float) -> None:
    """Follow the jobs until every one has finished; one that failed or was cancelled
    fails the benchmark, naming it and its error."""
    from partsbin.client.errors import ServerError
    from partsbin.client.progress import progress_bar

    pending = set(ids)
    with progress_bar(registry.progress, len(ids), f"{len(ids)} evaluation jobs") as advance:
        while pending:
            for job_id in sorted(pending):
                job = registry.jobs.get(job_id)
                if job["status"] == "succeeded":
                    pending.discard(job_id)
                    advance(1)
                elif job["status"] in ("failed", "cancelled"):
                    last = (job.get("error") or "").strip().splitlines()[-1:] or [job["status"]]
                    raise ServerError(f"evaluation job {job_id} {job['status']}: {last[0]}")
            if pending:
                time.sleep(poll_seconds)
