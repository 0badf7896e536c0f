"""Joint training's knobs: how networks alternate, and how fast the shared aux heads learn."""

import pytest
import torch
from pydantic import ValidationError

from partsbin.parts.data import load_task
from partsbin.parts.jobs.settings import Settings
from partsbin.parts.jobs.train import TrainSpec
from partsbin.trainer.engine import build_aux_heads, build_networks, train
from partsbin.trainer.loop import alternating, resolve_device, sequential


def test_joint_schedule_alternates_in_blocks_and_gives_each_network_its_steps():
    assert list(alternating([3, 3])) == [0, 1, 0, 1, 0, 1]  # the paper: alternate minibatches
    assert list(alternating([5, 5], every=2)) == [0, 0, 1, 1, 0, 0, 1, 1, 0, 1]
    assert list(alternating([4, 4, 4], every=10)) == [0] * 4 + [1] * 4 + [2] * 4
    assert list(sequential([2, 3])) == [0, 0, 1, 1, 1]
    # Nothing is built per step up front: the first step of 10^12 comes at once.
    assert next(alternating([10**12, 10**12])) == 0 and next(sequential([10**12])) == 0
    with pytest.raises(ValidationError, match="alternate_every"):
        Settings(alternate_every=0)
    with pytest.raises(ValidationError, match="aux_lr_scale"):
        Settings(aux_lr_scale=0)


def _aux_change(scale: float) -> float:
    spec = TrainSpec(
        name="t",
        methods=["RP"],
        scheme="joint",
        arch={"name": "resnet_cifar", "config": {"depth": 8, "width": 4}},
        tasks=[{"name": "a", "pair": "digits", "pair_task": "a"}, {"name": "b", "pair": "digits", "pair_task": "b"}],
        settings={"steps": 3, "batch_size": 16, "aux_lr_scale": scale, "optimizer": "sgd", "momentum": 0},
        publish=False,
    )
    tasks = [load_task(t) for t in spec.tasks]
    torch.manual_seed(0)
    nets = build_networks(spec, tasks)
    aux = build_aux_heads(spec, tasks, [])
    before = [p.detach().clone() for p in aux.rp.parameters()]
    train(nets, aux, spec.settings, joint=True, device=resolve_device(spec.settings))
    return sum(float((p.detach() - b).abs().sum()) for p, b in zip(aux.rp.parameters(), before, strict=True))


def test_aux_lr_scale_sets_how_far_the_shared_heads_move():
    # Plain SGD without momentum: the heads' step is proportional to their learning rate.
    slow, normal = _aux_change(0.01), _aux_change(1.0)
    assert 0 < slow < normal / 20


def test_knobs_are_refused_where_nothing_uses_them():
    from partsbin.parts.jobs.shared_head import MultiArchSpec

    base = {
        "name": "t",
        "arch": {"name": "resnet_cifar", "config": {"depth": 8, "width": 4}},
        "tasks": [{"name": "a", "pair": "digits", "pair_task": "a"}],
    }
    with pytest.raises(ValidationError, match="alternate_every belongs to the joint scheme"):
        TrainSpec.model_validate({**base, "scheme": "independent", "settings": {"alternate_every": 5}})
    with pytest.raises(ValidationError, match="settings.aux_lr_scale is not used by train-multiarch jobs"):
        MultiArchSpec.model_validate(
            {
                "name": "m",
                "namespace": "ns",
                "task": {"name": "a", "pair": "digits", "pair_task": "a"},
                "networks": [{"name": "r", "arch": {"name": "resnet_cifar", "config": {"depth": 8}}}],
                "settings": {"aux_lr_scale": 0.5},
            }
        )


def test_fct_spec_refuses_fields_it_would_ignore():
    from partsbin.parts.jobs.bridges import FCTSpec

    base = {"name": "t", "namespace": "ns", "old_extractor": "ns/old", "new_extractor": "ns/new"}
    with pytest.raises(ValidationError, match="set space to 'junction'"):
        FCTSpec.model_validate({**base, "new_head": "ns/head"})
    with pytest.raises(ValidationError, match="side_dim describe"):
        FCTSpec.model_validate({**base, "side_info": False, "side_dim": 32})
    assert FCTSpec.model_validate(base).fit_images == 20000
    assert FCTSpec.model_validate({**base, "space": "junction"}).fit_images == 5000


def test_every_kind_refuses_the_settings_it_does_not_read_naming_the_kind():
    from partsbin.parts.jobs import InvalidSpec, parse_job_spec

    adapt = {"kind": "adapt", "extractor": "ns/e", "rp_head": "ns/rp", "data": {"source": "digits"}}
    with pytest.raises(InvalidSpec, match=r"settings.distributed is not used by adapt jobs"):
        parse_job_spec({**adapt, "settings": {"distributed": {"nproc_per_node": 2}}})
    spec = parse_job_spec({**adapt, "settings": {"steps": 5}})
    # The kind's defaults fill the rest; a stored spec holds only what the kind reads.
    assert spec.settings.lr == 0.01 and spec.settings.rp_fraction == 1.0 and spec.name == "e-adapted"
    stored = spec.model_dump(mode="json")
    assert "distributed" not in stored["settings"] and "alternate_every" not in stored["settings"]
    assert parse_job_spec(stored) == spec
    with pytest.raises(InvalidSpec, match=r"settings.steps is not used by transfer jobs"):
        parse_job_spec({**adapt, "kind": "transfer", "head": "ns/h", "settings": {"steps": 5}})
    with pytest.raises(InvalidSpec, match=r"settings.rp_fraction is not used by evaluate jobs"):
        parse_job_spec({"kind": "evaluate", "extractor": "ns/e", "heads": ["ns/h"], "settings": {"rp_fraction": 1}})
