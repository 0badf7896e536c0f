"""Forward Compatible Training: a transform with side-information moves an old gallery
into the new model's space without running any backbone."""

from __future__ import annotations

import pytest
import torch

from partsbin.client.errors import Incompatible, UsageError
from partsbin.trainer.fct import FCTSettings, run_fct_experiment


def test_fct_transform_with_side_info_lands_between_old_and_new(live, client_for):
    reg = client_for(live, live.token("admin"))
    s = FCTSettings(old_steps=60, new_steps=150, side_steps=100, transform_steps=300, hidden=64, threads=1)
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
    # the old extractor to the new model's head through each, not composable into one module.
    found = reg.paths(extractor=out["refs"]["old"], head=out["refs"]["new_head"])["paths"]
    assert sorted(p["bridges"][0] for p in found) == sorted([out["refs"]["transform"], out["refs"]["transform_side"]])
    assert not any(p["composable"] for p in found) and "for retrieval" in found[0]["steps"][0]["why"]
    with pytest.raises(Incompatible, match="only through FCT transforms"):
        reg.assemble(out["refs"]["old"], out["refs"]["new_head"], via="auto")
