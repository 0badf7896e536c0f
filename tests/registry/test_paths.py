"""/paths and assemble(via=...): ways from an extractor to a head through bridges."""

from __future__ import annotations

import json

import pytest
import torch

from partsbin.client.errors import Incompatible
from partsbin.parts.archs import build
from partsbin.parts.describe import card_for
from tests.helpers import aux_rp, extractor_card, head_card, network


def _adapter(reg, name: str, source: str, to: str, seed: int = 0):
    torch.manual_seed(seed)
    module = build("stitch", in_chans=8, out_chans=8)
    card = card_for(
        name=name,
        role="adapter",
        arch="stitch",
        config={"in_chans": 8, "out_chans": 8},
        split="adapter",
        input_size=8,
        bridge={"from": source, "to": to},
    )
    return reg.push(module, card)


@pytest.fixture
def graph(live, client_for):
    return _graph(client_for(live, live.token("admin")))


def _graph(reg):
    """X (no group) -A1-> X3 (no group) -A2-> group G of head H; X -A0-> H; X -T-> X2 in G."""
    rp_module, rp_card = aux_rp(0)
    rp = reg.push(rp_module, rp_card)
    x = reg.push(network(1).extractor(), extractor_card("lab/x"))
    x2 = reg.push(network(2).extractor(), extractor_card("lab/x2", anchors=[rp.digest]))
    x3 = reg.push(network(3).extractor(), extractor_card("lab/x3"))
    h = reg.push(network(4).head(), head_card("lab/h", anchors=[rp.digest]))
    lone = reg.push(network(5).head(), head_card("lab/lone"))
    a0 = _adapter(reg, "lab/a0", x.digest, h.digest)
    a1 = _adapter(reg, "lab/a1", x.digest, x3.digest)
    a2 = _adapter(reg, "lab/a2", x3.digest, rp.digest)
    t = _adapter(reg, "lab/t", x.digest, x2.digest)
    return reg, {"x": x, "x2": x2, "x3": x3, "h": h, "lone": lone, "a0": a0, "a1": a1, "a2": a2, "t": t, "rp": rp}


def test_paths_finds_a_two_hop_path_and_ranks_measured_first(graph):
    reg, c = graph
    found = reg.paths(extractor=c["x"].ref, head=c["h"].ref)["paths"]
    chains = [p["bridges"] for p in found]
    assert [c["a1"].ref, c["a2"].ref] in chains, chains
    assert [c["a0"].ref] in chains and [c["t"].ref] in chains
    assert all(p["status"] == "unmeasured" for p in found)
    # Unmeasured: fewest bridges first.
    assert len(found[0]["bridges"]) == 1 and found[-1]["bridges"] == [c["a1"].ref, c["a2"].ref]
    two = found[-1]
    assert [s["kind"] for s in two["steps"]] == ["adapter", "adapter"]
    assert "group of aux head" in two["steps"][-1]["why"] and c["h"].ref in two["steps"][-1]["why"]
    via_t = next(p for p in found if p["bridges"] == [c["t"].ref])
    assert [s["kind"] for s in via_t["steps"]] == ["adapter", "group"]

    # A trusted measurement of the two-hop path puts it first.
    reg.post_evaluation(
        extractor=c["x"].ref,
        head=c["h"].ref,
        dataset="digits:a:test",
        value=0.8,
        samples=500,
        bn_mode="batch",
        metric="bridged_recombination_accuracy",
        details={"via": [c["a1"].digest, c["a2"].digest]},
        classes=3,
    )
    found = reg.paths(extractor=c["x"].ref, head=c["h"].ref)["paths"]
    assert found[0]["bridges"] == [c["a1"].ref, c["a2"].ref]
    assert found[0]["status"] == "measured" and found[0]["measured_accuracy"] == pytest.approx(0.8)
    assert all(p["status"] == "unmeasured" for p in found[1:])
    # A bridged measurement never ranks /compatible as if the pair recombined directly.
    listed = reg.compatible(extractor=c["x"].ref)
    assert all(i["component"].digest != c["h"].digest or i["status"] != "measured" for i in listed)

    # The chain length is bounded.
    short = reg.paths(extractor=c["x"].ref, head=c["h"].ref, max_bridges=1)["paths"]
    assert all(len(p["bridges"]) <= 1 for p in short) and len(short) == 2


@pytest.mark.postgres
def test_paths_on_postgres(make_registry, postgres_url, client_for):
    live = make_registry(database_url=postgres_url)
    reg, c = _graph(client_for(live, live.token("admin")))
    found = reg.paths(extractor=c["x"].ref, head=c["h"].ref)["paths"]
    assert sorted(len(p["bridges"]) for p in found) == [1, 1, 2]
    assert found[-1]["bridges"] == [c["a1"].ref, c["a2"].ref]
    via = {tuple(i["via"]) for i in reg.compatible(head=c["h"].ref) if i.get("via")}
    assert via == {(c["a0"].ref,), (c["a2"].ref,)}


def test_assemble_through_bridges(graph):
    reg, c = graph
    model = reg.assemble(c["x"].ref, c["h"].ref, via="auto")
    assert len(model.via) == 1  # the best (shortest, all unmeasured) path
    out = model(torch.randn(4, 1, 16, 16))
    assert out.shape == (4, 3)
    chained = reg.assemble(c["x"].ref, c["h"].ref, via=[c["a1"].ref, c["a2"].ref])
    assert chained.via == [c["a1"].ref, c["a2"].ref] and chained(torch.randn(4, 1, 16, 16)).shape == (4, 3)
    with pytest.raises(Incompatible, match="chain is broken"):
        reg.assemble(c["x"].ref, c["h"].ref, via=[c["a2"].ref])
    direct = reg.assemble(c["x2"].ref, c["h"].ref, via="auto")
    assert direct.via == []


def test_no_path_says_so_and_suggests_stitch(graph):
    reg, c = graph
    assert reg.paths(extractor=c["x"].ref, head=c["lone"].ref)["paths"] == []
    with pytest.raises(Incompatible) as info:
        reg.assemble(c["x"].ref, c["lone"].ref, via="auto")
    message = str(info.value)
    assert "no bridge is known" in message and "partsbin stitch" in message
    assert "8 channels at 8x8" in message and "8 channels at any size" in message


def test_compatible_lists_bridged_parts_with_via(graph):
    reg, c = graph
    heads = reg.compatible(extractor=c["x"].ref)
    bridged = [i for i in heads if i.get("via")]
    assert {(i["component"].digest, tuple(i["via"])) for i in bridged} == {(c["h"].digest, (c["a0"].ref,))}
    assert all("via" not in i or i["via"] is None for i in heads if not i.get("via"))
    extractors = reg.compatible(head=c["h"].ref)
    direct = [i for i in extractors if not i.get("via")]
    assert [i["component"].digest for i in direct] == [c["x2"].digest]
    via = {tuple(i["via"]) for i in extractors if i.get("via")}
    # Into h itself (a0) and into its group (a2, from x3).
    assert via == {(c["a0"].ref,), (c["a2"].ref,)}


def test_cli_paths_and_stitch_submission(graph, live):
    from tests.client.test_cli import cli

    reg, c = graph
    env = {"PARTSBIN_URL": live.url, "PARTSBIN_TOKEN": live.token("admin")}
    done = cli("paths", "--extractor", c["x"].ref, "--head", c["h"].ref, "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["paths"]) == 3
    shown = cli("paths", "--extractor", c["x"].ref, "--head", c["h"].ref, env=env)
    assert "1. bridged (1 bridges, unmeasured)" in shown.stdout and c["a1"].ref in shown.stdout
    done = cli(
        "stitch",
        "--extractor",
        c["x"].ref,
        "--head",
        c["lone"].ref,
        "--name",
        "lab/x-to-lone",
        "--steps",
        "20",
        "--data",
        '{"source": "digits", "classes": ["0", "1", "2"]}',
        "--no-wait",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    (job,) = reg.jobs.list()
    assert job["spec"]["kind"] == "stitch" and job["spec"]["settings"]["steps"] == 20
    assert f"as job {job['id']}" in done.stderr
    assert job["spec"]["data"]["classes"] == ["0", "1", "2"]
    bad = cli(
        "stitch", "--extractor", c["x"].ref, "--head", c["h"].ref, "--name", "lab/y", "--method", "magic", env=env
    )
    assert bad.returncode != 0 and "method" in bad.stderr
    # fct submits the spec Registry.fct would: a transform of junction features, measured with the new head.
    args = ["fct", "--old", c["x"].ref, "--new", c["x2"].ref, "--name", "lab/fct"]
    done = cli(*args, "--space", "junction", "--new-head", c["h"].ref, "--side-info", "none", "--no-wait", env=env)
    assert done.returncode == 0, done.stderr
    (spec,) = [j["spec"] for j in reg.jobs.list() if j["spec"]["kind"] == "fct"]
    assert spec["kind"] == "fct" and spec["space"] == "junction" and spec["side_info"] is False
    assert spec["new_head"] == c["h"].ref
    bad = cli(*args, "--space", "pixels", env=env)
    assert bad.returncode != 0 and "space" in bad.stderr


def test_a_bridge_must_name_existing_fitting_endpoints(graph, live):
    """An adapter's card must name existing endpoints of the right kinds and interfaces:
    otherwise a 4xx that says which, and nothing is stored."""
    import httpx

    from tests.helpers import write_component

    reg, c = graph
    good = {"from": c["x"].digest, "to": c["h"].digest}
    token = live.token("admin")
    rows, blobs = live.row_count(), live.blob_count()
    cases = [
        ({**good, "to": "sha256:" + "ab" * 32}, 8, "not in this registry: publish"),
        ({**good, "from": "sha256:" + "cd" * 32}, 8, "not in this registry: publish an extractor first"),
        ({"from": c["h"].digest, "to": c["h"].digest}, 8, "which is a head, not an extractor"),
        ({**good, "to": c["a0"].digest}, 8, "which is an adapter, not a head"),
        (good, 16, "takes 16 channels at 8, but bridge.from lab/x@1 gives 8 channels at 8x8"),
        ({**good, "side_info": c["x2"].digest}, 8, "not a side-info model"),
        ({**good, "space": "embedding"}, 8, "an adapter maps junction features"),
    ]
    for i, (bridge, chans, message) in enumerate(cases):
        module = build("stitch", in_chans=chans, out_chans=8)
        card = card_for(
            name=f"lab/bad{i}",
            role="adapter",
            arch="stitch",
            config={"in_chans": chans, "out_chans": 8},
            split="adapter",
            input_size=8,
            bridge=bridge,
        )
        path = write_component(live.settings.data_dir / f"bad{i}.safetensors", module, card)
        r = httpx.post(
            f"{live.url}/components",
            files={"file": path.read_bytes()},
            data={"card": card.model_dump_json()},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 422, r.text
        assert message in r.json()["detail"], r.json()["detail"]
        assert r.headers["X-Upload-Check"] == "bridge"
    # A transform of junction features must take them at the size the old extractor gives.
    transform = build("fct_transform", in_chans=8, out_chans=8, hidden=4)
    card = card_for(
        name="lab/badt",
        role="transform",
        arch="fct_transform",
        config={"in_chans": 8, "out_chans": 8, "hidden": 4},
        split="transform",
        input_size=4,
        bridge={"from": c["x"].digest, "to": c["x2"].digest, "space": "junction"},
    )
    path = write_component(live.settings.data_dir / "badt.safetensors", transform, card)
    r = httpx.post(
        f"{live.url}/components",
        files={"file": path.read_bytes()},
        data={"card": card.model_dump_json()},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 422 and "takes them at 4x4, but bridge.from lab/x@1 gives them at 8x8" in r.text, r.text
    assert live.row_count() == rows and live.blob_count() == blobs
    # A card of another role may not name a bridge, and a bridge must name one.
    with pytest.raises(ValueError, match="only an adapter or transform names a 'bridge'"):
        extractor_card("lab/y").model_copy().model_validate({**extractor_card("lab/y").embedded(), "bridge": good})
    with pytest.raises(ValueError, match="must name what it joins"):
        card_for(
            name="lab/z",
            role="adapter",
            arch="stitch",
            config={"in_chans": 8, "out_chans": 8},
            split="adapter",
            input_size=8,
        )


def test_pages_show_bridges(graph, live):
    import httpx

    reg, c = graph
    page = httpx.get(f"{live.url}/ui/components/lab/a1")
    assert page.status_code == 200
    assert "bridge from" in page.text and "bridge to" in page.text
    assert httpx.get(f"{live.url}/ui/components/lab/x").status_code == 200


def test_every_chain_is_found_with_parallel_bridges_at_every_hop_and_cycles(live, client_for):
    """Three parallel adapters on each of two hops (X -> Y -> head): nine chains, each its
    own path, plus cycles (Y -> X, Y -> Y) that end; paged, best first, and a trusted
    measurement of one chain through the *last* parallel adapters ranks it first."""
    reg = client_for(live, live.token("admin"))
    x = reg.push(network(1).extractor(), extractor_card("lab/px"))
    y = reg.push(network(2).extractor(), extractor_card("lab/py"))
    h = reg.push(network(3).head(), head_card("lab/ph"))
    first = [_adapter(reg, f"lab/xy{i}", x.digest, y.digest, seed=i) for i in range(3)]
    second = [_adapter(reg, f"lab/yh{i}", y.digest, h.digest, seed=10 + i) for i in range(3)]
    _adapter(reg, "lab/yx", y.digest, x.digest, seed=20)  # back to the start: a cycle
    _adapter(reg, "lab/yy", y.digest, y.digest, seed=21)  # into itself
    found = reg.paths(extractor=x.ref, head=h.ref, max_bridges=3)
    chains = {tuple(p["bridges"]) for p in found["paths"]}
    assert chains == {(a.ref, b.ref) for a in first for b in second}
    assert found["total"] == 9 and len(found["paths"]) == 9
    # Pages of two walk the same ranking.
    seen, cursor = [], None
    while True:
        page = reg._get("/paths", extractor=x.ref, head=h.ref, limit=2, cursor=cursor)
        seen += [tuple(p["bridges"]) for p in page["paths"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [tuple(p["bridges"]) for p in found["paths"]]
    reg.post_evaluation(
        extractor=x.ref,
        head=h.ref,
        dataset="d",
        value=0.95,
        samples=500,
        bn_mode="batch",
        metric="bridged_recombination_accuracy",
        details={"via": [first[-1].digest, second[-1].digest]},
        classes=3,
    )
    best = reg.paths(extractor=x.ref, head=h.ref)["paths"][0]
    assert best["bridges"] == [first[-1].ref, second[-1].ref] and best["measured_accuracy"] == 0.95
