"""Forward Compatible Training: a transform with side-information moves an old gallery
into the new model's space without running any backbone."""

from __future__ import annotations

import threading

import pytest
import torch

from partsbin.client.errors import Incompatible, UsageError
from partsbin.trainer.fct import FCTSettings, _train, run_fct_experiment
from partsbin.trainer.worker import Worker


def test_fct_transform_with_side_info_lands_between_old_and_new(live, client_for):
    reg = client_for(live, live.token("admin"))
    s = FCTSettings(old_steps=60, new_steps=150, side_steps=100, transform_steps=300, hidden=256, threads=1)
    out = run_fct_experiment(reg, s)
    rows = out["rows"]
    old, new, fct = rows["old/old"]["top1"], rows["new/new"]["top1"], rows["new/FCT(old+side)"]["top1"]
    print({k: round(v["top1"], 3) for k, v in rows.items()})
    assert new > old + 0.05  # the new model (all classes) retrieves better than the old one
    assert old < fct <= new + 0.02
    # The transforms are bridges from the old extractor to the new one; one names the side-info model.
    t = reg.info(out["refs"]["transform_side"]).card
    assert t.role == "transform" and t.bridge.source == reg.info(out["refs"]["old"]).digest
    assert t.bridge.to == reg.info(out["refs"]["new"]).digest
    assert t.bridge.side_info == reg.info(out["refs"]["side_info"]).digest
    # No backbone: stored embeddings go through the transform much faster than images through the new model.
    assert out["throughput"]["transform_images_per_s"] > out["throughput"]["backbone_images_per_s"]
    # A gallery without its side-information is refused, saying what the transform takes.
    with pytest.raises(UsageError, match="takes 32 channels"):
        reg.transform_gallery(out["refs"]["transform_side"], torch.zeros(3, 16))
    plain = reg.transform_gallery(out["refs"]["transform"], torch.zeros(3, 16))
    assert plain.shape == (3, 16)
    # The transforms are edges between the two extractors' spaces: /paths lists the way from
    # the old extractor to the new model's head through each. Transforms of pooled embeddings
    # are for galleries, not composable; those of junction features compose, and theirs are
    # measured (the fct job and bench_path post the new head on transformed old features).
    found = reg.paths(extractor=out["refs"]["old"], head=out["refs"]["new_head"])["paths"]
    refs = out["refs"]
    assert sorted(p["bridges"][0] for p in found) == sorted(
        [refs["transform"], refs["transform_side"], refs["junction"], refs["junction_side"]]
    )
    by_bridge = {p["bridges"][0]: p for p in found}
    assert (
        not by_bridge[refs["transform"]]["composable"]
        and "for retrieval" in by_bridge[refs["transform"]]["steps"][0]["why"]
    )
    assert by_bridge[refs["junction_side"]]["composable"] and by_bridge[refs["junction_side"]]["measured_accuracy"]
    assert found[0]["bridges"][0] in (refs["junction"], refs["junction_side"])  # measured ranks first
    # The new head classifies transformed old features far better than the old features fed
    # to it directly (same interface, no bridge).
    c = out["classification"]
    assert c["new head on FCT(old+side)"] > c["new head on old features, no bridge"] + 0.2
    # assemble composes the path: old extractor, side-info model, transform, new head.
    net = reg.assemble(refs["old"], refs["new_head"], via=[refs["junction_side"]])
    assert net(torch.zeros(4, 1, 8, 8)).shape == (4, 10)
    with pytest.raises(Incompatible, match="pooled embeddings"):
        reg.assemble(refs["old"], refs["new_head"], via=[refs["transform"]])
    # Each transform maps what it was fitted on: pooled embeddings are refused by a junction one.
    with pytest.raises(UsageError, match="transform of junction features; these are pooled embeddings"):
        reg.transform_gallery(refs["junction"], torch.zeros(3, 16))
    assert reg.transform_gallery(refs["junction"], torch.zeros(3, 16, 4, 4)).shape == (3, 16, 4, 4)


def test_composed_side_info_uses_its_running_statistics_in_any_mode():
    """In a composed path the side-info model gives the vectors the transform was fitted on
    (running statistics), even when the whole network is evaluated with batch statistics."""
    from torch import nn

    from partsbin.parts.archs import build
    from partsbin.parts.archs.bridges import WithSideInfo
    from partsbin.parts.batchnorm import evaluating
    from partsbin.trainer.fct import side_vectors

    torch.manual_seed(0)
    side = build("side_info", in_chans=1, width=4, dim=3)
    side.train()
    for _ in range(5):  # running statistics that differ from any one batch's
        side(torch.randn(16, 1, 8, 8) * 3 + 1)
    seen = {}

    class Spy(nn.Module):
        def forward(self, x):
            seen["x"] = x
            return x

    x = torch.randn(8, 1, 8, 8)
    before = {k: v.clone() for k, v in side.state_dict().items()}
    composed = WithSideInfo(nn.Conv2d(1, 2, 1), side, Spy())
    with evaluating(composed, "batch"), torch.no_grad():
        composed(x)
    assert torch.allclose(seen["x"][:, 2:, 0, 0], side_vectors(side, x)[:, :, 0, 0], atol=1e-6)
    assert all(torch.equal(v, before[k]) for k, v in side.state_dict().items())


def test_a_worker_runs_an_fct_job_and_publishes_the_bridge(live, client_for):
    reg = client_for(live, live.token("publish", ["lab"]))
    s = FCTSettings(namespace="lab", threads=1)
    classes = [str(i) for i in range(10)]
    old = _train(reg, s, "old", classes[:5], s.arch, steps=10).refs
    new = _train(reg, s, "new", classes, s.arch, steps=10, seed_offset=1000).refs
    old_ext, new_ext, new_head = old[0], new[0], new[1]
    assert new_head.split("@")[0].endswith("-head")
    job = reg.fct(
        old_ext,
        new_ext,
        "lab/old-to-new",
        space="junction",
        new_head=new_head,
        steps=5,
        images=200,
        settings={"test_limit": 100, "threads": 1},
        options={"side_steps": 5},
    )
    worker = Worker(client_for(live, live.token("publish", ["lab"])), name="w", poll_seconds=0.1)
    t = threading.Thread(target=worker.run, kwargs={"exit_when_idle": True})
    t.start()
    t.join(180)
    done = job.refresh()
    assert done.status == "succeeded" and done.raw["worker"] == "w", done.error
    assert done.refs == ["lab/old-to-new-side-info@1", "lab/old-to-new@1"]
    assert done.result.side_info and done.result.classification["samples"] == 100
    side, transform = (reg.info(r) for r in done.refs)
    assert transform.card.bridge.source == reg.info(old_ext).digest
    assert transform.card.bridge.to == reg.info(new_ext).digest
    assert transform.card.bridge.side_info == side.digest and transform.card.bridge.space == "junction"
    # The job measured the new head on transformed old features and posted it for the path.
    posted = [e for e in reg.evaluations(extractor=old_ext, head=new_head) if e["details"].get("via")]
    assert [e["details"]["via"] for e in posted] == [[transform.digest]]
    assert reg.assemble(old_ext, new_head, via=[transform.ref])(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
