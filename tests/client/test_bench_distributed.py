"""`bench --distributed`: a matrix split into evaluate jobs that workers take from the
queue gives the matrix a local benchmark gives."""

from __future__ import annotations

import threading

import pytest

from partsbin.parts.describe import card_for
from partsbin.trainer.worker import Worker
from tests.helpers import CFG, network

DIGITS_012 = {"source": "digits", "classes": ["0", "1", "2"], "limit": 90}


def _publish(reg) -> tuple[list[str], list[str]]:
    provenance = {"dataset": {"name": "digits", "task": "t", "test": DIGITS_012}}
    exts, heads = [], []
    for i in range(3):
        net = network(i)
        exts.append(
            reg.push(
                net.extractor(),
                card_for(
                    name=f"lab/e{i}",
                    role="extractor",
                    arch="resnet_cifar",
                    config=CFG,
                    split="stage2",
                    input_size=8,
                    provenance=provenance,
                ),
            ).ref
        )
    for i, labels in enumerate((["0", "1", "2"], ["2", "1", "0"], ["1", "2", "7"], ["7", "8", "9"])):
        heads.append(
            reg.push(
                network(10 + i).head(),
                card_for(name=f"lab/h{i}", role="head", arch="resnet_cifar", config=CFG, split="stage2", labels=labels),
            ).ref
        )
    return exts, heads


def test_distributed_matrix_equals_the_local_one(live, client_for):
    reg = client_for(live, live.token("publish", ["lab"]))
    exts, heads = _publish(reg)
    local = reg.bench(exts, heads, post=False, batch_size=32, threads=1)

    workers = [
        Worker(client_for(live, live.token("publish", ["lab"])), name=f"w{i}", poll_seconds=0.1) for i in range(2)
    ]
    threads = [threading.Thread(target=w.run) for w in workers]
    for t in threads:
        t.start()
    try:
        spread = reg.bench(exts, heads, distributed=True, heads_per_job=3, batch_size=32, threads=1, poll_seconds=0.1)
    finally:
        for w in workers:
            w.stop.set()
        for t in threads:
            t.join(60)
    assert spread.extractors == local.extractors and spread.heads == local.heads
    for e in exts:
        for h in heads:
            a, b = local.cell(e, h), spread.cell(e, h)
            assert (b.accuracy, b.samples, b.unrestricted) == pytest.approx((a.accuracy, a.samples, a.unrestricted)), (
                e,
                h,
            )
    # 3 extractors × 2 chunks of heads; each job's cells were posted naming it.
    jobs = [j for j in reg.jobs.list() if j["spec"]["kind"] == "evaluate"]
    assert len(jobs) == 6 and all(j["status"] == "succeeded" for j in jobs)
    assert {w for j in jobs for w in [j["worker"]]} <= {"w0", "w1"}
    evals = reg.evaluations(extractor=exts[0])
    assert {e["details"]["job"] for e in evals} <= {str(j["id"]) for j in jobs}
    assert spread.cell(exts[0], heads[3]).samples == 0  # no class in common: nothing measured, nothing posted


def test_distributed_needs_what_it_can_measure(live, client_for):
    from partsbin import UsageError

    reg = client_for(live, live.token("publish", ["lab"]))
    with pytest.raises(UsageError, match="local one"):
        reg.bench(["lab/e0"], ["lab/h0"], distributed=True, correlation=True)
