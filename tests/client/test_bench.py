"""Benchmarking recombinations, evaluations and the ranking they give /compatible."""

from __future__ import annotations

import torch

from partsbin.client.correlation import cross_correlation
from partsbin.parts.archs import build
from tests.helpers import aux_rp, extractor_card, head_card, network, own_test_digest


def test_cross_correlation_identity_and_permutation():
    torch.manual_seed(0)
    ext = build("resnet_cifar", depth=8, width=8, in_chans=1).extractor().eval()
    x = torch.randn(32, 1, 16, 16)
    with torch.no_grad():
        feats = ext(x)
    direct, permuted = cross_correlation(feats, feats)
    assert abs(direct - 1) < 1e-9
    assert abs(permuted - 1) < 1e-9
    perm = torch.randperm(feats.shape[1], generator=torch.Generator().manual_seed(3))
    shuffled = feats[:, perm]
    direct, permuted = cross_correlation(feats, shuffled)
    assert direct < 0.5, "channels in another order do not correlate one to one"
    assert abs(permuted - 1) < 1e-9, "the best permutation recovers the order"


def test_evaluations_round_trip_and_rank_compatible(live, client_for):
    reg = client_for(live, live.token("admin"))
    aux, card = aux_rp()
    anchor = reg.push(aux, card).digest
    head = reg.push(network(0).head(), head_card("lab/head", [anchor]))
    exts = [reg.push(network(i).extractor(), extractor_card(f"lab/e{i}", [anchor])) for i in (1, 2, 3)]
    before = [i["component"].ref for i in reg.compatible(head=head.ref)]
    assert before == [e.ref for e in exts] and all(
        i["status"] == "declared, unmeasured" for i in reg.compatible(head=head.ref)
    )

    reg.post_evaluation(
        extractor=exts[2].ref,
        data_digest=own_test_digest(exts[2].name),
        head=head.ref,
        dataset="d",
        value=0.9,
        samples=100,
        bn_mode="batch",
        batch_size=64,
    )
    reg.post_evaluation(
        extractor=exts[1].ref,
        data_digest=own_test_digest(exts[1].name),
        head=head.ref,
        dataset="d",
        value=0.5,
        samples=100,
        bn_mode="batch",
    )
    # Running-mode evaluations do not rank.
    reg.post_evaluation(
        extractor=exts[0].ref,
        data_digest=own_test_digest(exts[0].name),
        head=head.ref,
        dataset="d",
        value=0.99,
        samples=1000,
        bn_mode="running",
    )
    items = reg.compatible(head=head.ref)
    assert [i["component"].ref for i in items] == [exts[2].ref, exts[1].ref, exts[0].ref]
    assert [i["status"] for i in items] == ["measured", "measured", "declared, unmeasured"]
    assert items[0]["measured_accuracy"] == 0.9 and items[0]["reasons"][0]["kind"] == "measured"
    assert items[0]["reasons"][1]["kind"] == "declared"
    # The evaluation with the most samples wins.
    reg.post_evaluation(
        extractor=exts[1].ref,
        data_digest=own_test_digest(exts[1].name),
        head=head.ref,
        dataset="d",
        value=0.95,
        samples=500,
        bn_mode="batch",
    )
    assert [i["component"].ref for i in reg.compatible(head=head.ref)][:2] == [exts[1].ref, exts[2].ref]
    # Pages of one walk the measured part, then the declared part.
    seen, cursor = [], None
    while True:
        page = reg._get("/compatible", head=head.ref, limit=1, cursor=cursor)
        seen += [i["component"]["ref"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [exts[1].ref, exts[2].ref, exts[0].ref]
    got = reg.evaluations(extractor=exts[1].ref, head=head.ref)
    assert [(e["value"], e["samples"], e["bn_mode"]) for e in got] == [(0.5, 100, "batch"), (0.95, 500, "batch")]
    # The other direction ranks too (0.9 of 100 is well above the RP head's chance level of 1/4).
    reg.post_evaluation(
        extractor=exts[0].ref,
        data_digest=own_test_digest(exts[0].name),
        head="lab/rp",
        dataset="d",
        value=0.9,
        samples=100,
        bn_mode="batch",
    )
    assert reg.compatible(extractor=exts[0].ref)[0]["component"].ref == "lab/rp@1"


def test_evaluations_need_a_publish_token_and_sane_values(live, client_for):
    import pytest

    from partsbin import InvalidUpload, Unauthorized

    admin = client_for(live, live.token("admin"))
    aux, card = aux_rp()
    anchor = admin.push(aux, card).digest
    e = admin.push(network(1).extractor(), extractor_card("lab/e", [anchor]))
    reader = client_for(live, live.token("read"))
    with pytest.raises(Unauthorized):
        reader.post_evaluation(extractor=e.ref, head="lab/rp", dataset="d", value=0.5, samples=1, bn_mode="batch")
    with pytest.raises(InvalidUpload, match=r"accuracy lies in \[0, 1\]"):
        admin.post_evaluation(extractor=e.ref, head="lab/rp", dataset="d", value=1.5, samples=1, bn_mode="batch")
    with pytest.raises(InvalidUpload, match="not an extractor"):
        admin.post_evaluation(extractor="lab/rp", head="lab/rp", dataset="d", value=0.5, samples=1, bn_mode="batch")
