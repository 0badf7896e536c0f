"""Incremental training: frozen aux heads stay bit-identical, buffers included."""

import torch

from partsbin.parts.data import load_task
from partsbin.parts.jobs.train import TrainSpec
from partsbin.trainer.engine import build_aux_heads, build_networks, freeze, train
from partsbin.trainer.loop import resolve_device


def test_frozen_aux_heads_are_bit_identical_after_training():
    spec = TrainSpec(
        name="t",
        methods=["RP", "DCC"],
        scheme="incremental",
        arch={"name": "resnet_cifar", "config": {"depth": 8, "width": 4}},
        tasks=[{"name": "a", "pair": "digits", "pair_task": "a"}, {"name": "b", "pair": "digits", "pair_task": "b"}],
        settings={"steps": 4, "batch_size": 16},
        publish=False,
    )
    tasks = [load_task(t) for t in spec.tasks]
    nets = build_networks(spec, tasks)
    aux = build_aux_heads(spec, tasks, ["1", "2", "3", "4", "5", "6", "7", "8"])
    device = resolve_device(spec.settings)
    train(nets[:1], aux, spec.settings, joint=False, device=device)  # learns the aux heads
    freeze(aux)
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in aux.modules()]
    net_before = {k: v.clone() for k, v in nets[1].model.state_dict().items()}
    train(nets[1:], aux, spec.settings, joint=False, device=device)
    for m, b in zip(aux.modules(), before, strict=False):
        after = m.state_dict()
        assert set(after) == set(b)
        assert all(torch.equal(after[k], b[k]) for k in b), "frozen aux head changed"
        assert all(p.grad is None and not p.requires_grad for p in m.parameters())
        assert any("running_mean" in k for k in b) and any("num_batches_tracked" in k for k in b)
    # The network trained against them did change.
    assert not all(torch.equal(v, net_before[k]) for k, v in nets[1].model.state_dict().items())
