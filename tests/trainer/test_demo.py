"""The main job end to end (shortened): train, publish, look up, assemble, benchmark."""

from partsbin.trainer.demo import run_demo


def test_demo_recombination_beats_the_independent_pair(live, client_for, tmp_path):
    reg = client_for(live, live.token("admin"))
    result = run_demo(reg, steps=60, out_dir=tmp_path)
    compat, indep = result.compatible, result.independent
    ext_a, ext_b = compat.extractors
    head_a, head_b = compat.heads
    assert ext_a in result.found_by_lookup
    # A's extractor with B's head, against the same pairing of the independent networks.
    ab = compat.cell(ext_a, head_b).accuracy
    ab_independent = indep.cell(indep.extractors[0], indep.heads[1]).accuracy
    assert ab > ab_independent + 0.1, (ab, ab_independent)
    assert compat.recombination_mean() > indep.recombination_mean() + 0.15
    assert compat.cell(ext_a, head_a).own_task and compat.cell(ext_a, head_a).accuracy > 0.8
    assert all(p.is_file() and p.stat().st_size > 0 for p in result.heatmaps)
    # The benchmark posted evaluations, and /compatible now ranks by them.
    items = reg.compatible(head=head_b)
    assert items[0]["status"] == "measured"
