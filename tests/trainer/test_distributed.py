"""Data-parallel training on torch.distributed: two CPU processes (gloo) launched by
``torch.distributed.run`` against one process with the same global batch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from partsbin.parts.cancel import StopRequested
from partsbin.parts.jobs.train import TrainSpec
from partsbin.trainer.distributed import state_sha256
from partsbin.trainer.jobs import run_job as run
from partsbin.trainer.loop import Progress

TASKS = [{"name": "a", "pair": "digits", "pair_task": "a"}, {"name": "b", "pair": "digits", "pair_task": "b"}]
ARCH = {"name": "resnet_cifar", "config": {"depth": 8, "width": 4}}


def _spec(name: str, nproc: int | None, **overrides: Any) -> TrainSpec:
    # Every image rotated: with a fraction each rank rotates the first share of its own
    # half, other images than one process rotates, and the trajectories part for that alone.
    settings = {"steps": 40, "batch_size": 32, "threads": 1, "rp_fraction": 1.0}
    if nproc:
        settings["distributed"] = {"nproc_per_node": nproc}
    data = {"name": name, "namespace": "lab", "arch": ARCH, "tasks": TASKS, "settings": settings, "publish": False}
    return TrainSpec.model_validate({**data, **overrides})


def _losses(spec: TrainSpec, registry: Any = None) -> tuple[list[float], Any]:
    seen: list[dict[str, Any]] = []
    result = run(spec, registry, progress=Progress(on_step=seen.append, every=1))
    return [s["loss"] for s in seen if "step" in s], result


def test_two_processes_follow_the_one_process_loss_trajectory():
    """Joint training (alternating tasks, shared RP and DCC heads learnt by both). Each
    rank takes half of the same global batch, so the runs differ only in BatchNorm's
    batch statistics (per rank: 16 images instead of 32) and in summation order. Stated
    tolerance: each of the first 20 steps within 5%, the mean of the last 20 within 15%."""
    one, _ = _losses(_spec("one", None, methods=["RP", "DCC"], scheme="joint"))
    two, result = _losses(_spec("two", 2, methods=["RP", "DCC"], scheme="joint"))
    assert len(one) == len(two) == 80
    for step, (a, b) in enumerate(zip(one[:20], two[:20], strict=True)):
        assert abs(a - b) <= 0.05 * a, (step, a, b)
    tail_one, tail_two = sum(one[-20:]) / 20, sum(two[-20:]) / 20
    assert abs(tail_one - tail_two) <= 0.15 * tail_one, (tail_one, tail_two)
    assert tail_two < 0.5 * two[0], "it learnt"
    info = result.train.distributed
    assert info["world_size"] == 2 and info["backend"] == "gloo"
    assert result.tasks["a"].own_task_accuracy > 0.5


def test_distributed_incremental_run_publishes_parts_that_recombine(live, client_for):
    """Rank 0's weights are published by the launching process; a later distributed run
    against the published aux heads keeps them bit-identical on every rank."""
    reg = client_for(live, live.token("admin"))
    common = [str(c) for c in range(1, 9)]
    first = _spec(
        "inc", 2, methods=["RP", "DCC"], scheme="incremental", publish=True, tasks=TASKS[:1], dcc_labels=common
    )
    result = run(first, reg)
    anchors = [r for r in result.refs if "-aux-" in r]
    assert len(anchors) == 2, result.refs

    pulled = [reg.pull(r) for r in anchors]
    by_role = {c.role: c.build() for c in pulled}
    before = state_sha256([by_role["aux-rp"], by_role["aux-dcc"]], buffers=True)  # the order of AuxHeads.modules()
    second = _spec(
        "inc2", 2, methods=["RP", "DCC"], scheme="incremental", publish=True, tasks=TASKS[1:], anchors=anchors
    )
    later = run(second, reg)
    info = later.train.distributed
    # Every rank ended with these bytes (the launcher refuses ranks that disagree), and
    # they are the published anchors' bytes, buffers included.
    assert info["aux_sha256"] == before

    exts = [r for r in result.refs + later.refs if r.split("@")[0].endswith("-extractor")]
    heads = [r for r in result.refs + later.refs if r.split("@")[0].endswith("-head")]
    bench = reg.bench(sorted(exts), sorted(heads), post=False)
    cross = [c.accuracy for c in bench.cells if not c.own_task]
    # Chance over the 8 common classes is 12.5%; one process with this spec gives 27% and
    # 57% (40 steps of a width-4 ResNet-8), two gave 25% and 51%.
    assert len(cross) == 2 and min(cross) > 0.2 and max(cross) > 0.4, cross


def test_a_stop_request_ends_every_rank():
    """A worker asked to stop (SIGTERM, a cancelled job) stops the launcher and its ranks."""
    seen: list[dict[str, Any]] = []
    spec = _spec("stop", 2, methods=["RP"], scheme="joint")
    spec = spec.model_copy(update={"settings": spec.settings.model_copy(update={"steps": 100_000})})
    before = _ranks()
    with pytest.raises(StopRequested):
        run(spec, progress=Progress(on_step=seen.append, should_stop=lambda: any("step" in s for s in seen), every=1))
    assert any("step" in s for s in seen), "it trained before it was stopped"
    time.sleep(1)
    assert not _ranks() - before, "a rank outlived the stop"


def _ranks() -> set[int]:
    """Processes running a rank (Linux: their command lines under /proc)."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"partsbin.trainer.distributed" in cmdline.read_bytes():
                found.add(int(cmdline.parent.name))
        except OSError:
            pass  # the process ended meanwhile
    return found
