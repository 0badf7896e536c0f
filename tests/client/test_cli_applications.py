"""`partsbin adapt` and `partsbin transfer` as a user runs them against a live registry."""

from __future__ import annotations

import json

from partsbin.parts.describe import card_for
from tests.client.test_cli import cli, short
from tests.helpers import CFG, aux_rp, network

DIGITS_012 = {"source": "digits", "classes": ["0", "1", "2"], "limit": 60}


def _parts(reg):
    rp_module, rp_card = aux_rp(0, "lab/rp")
    rp = reg.push(rp_module, rp_card)
    compat = {"anchors": [rp.digest], "methods": ["RP"], "scheme": "incremental"}
    net = network(3)
    ext = reg.push(
        net.extractor(),
        card_for(
            name="lab/e",
            role="extractor",
            arch="resnet_cifar",
            config=CFG,
            split="stage2",
            input_size=8,
            compat=compat,
        ),
    )
    head = reg.push(
        net.head(),
        card_for(
            name="lab/h",
            role="head",
            arch="resnet_cifar",
            config=CFG,
            split="stage2",
            labels=["0", "1", "2"],
            compat={**compat, "sibling": ext.ref},
        ),
    )
    return rp, ext, head


def test_transfer_and_adapt_locally_from_the_command_line(live, client_for):
    token = live.token("publish", ["lab"])
    reg = client_for(live, token)
    rp, ext, head = _parts(reg)
    env = {"PARTSBIN_URL": live.url, "PARTSBIN_TOKEN": token}
    done = cli(
        "transfer", "-e", ext.ref, "-H", head.ref, "--data", json.dumps(DIGITS_012), "--steps", "2,0",
        "--batch-size", "16", "--threads", "1", "--local", "--json", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["kind"] == "transfer"
    curve = out["result"]["curve"]
    assert [p["finetune_steps"] for p in curve] == [0, 2]
    assert sorted(ev["finetune_steps"] for ev in reg.evaluations(extractor=ext.ref)) == [0, 2]

    done = cli(
        "adapt", "-e", ext.ref, "--rp-head", rp.ref, "--data", json.dumps(DIGITS_012), "--steps", "3",
        "--batch-size", "16", "--threads", "1", "--name", "e-adapted", "--local", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "published lab/e-adapted-extractor@1" in done.stdout
    assert "adapted:" in done.stdout and "as-is:" in done.stdout
    assert reg.info("lab/e-adapted-extractor").card.provenance.model_extra["adapted_from"] == ext.digest


def test_bad_data_specs_get_one_line(live):
    env = {"PARTSBIN_URL": live.url}
    assert "--data" in short(cli("adapt", "-e", "lab/e", "--rp-head", "lab/rp", "--data", "nope.json", env=env))
    assert "source" in short(cli("transfer", "-e", "lab/e", "-H", "lab/h", "--data", '{"source": "mnist"}', env=env))
    assert "--steps" in short(
        cli("transfer", "-e", "lab/e", "-H", "lab/h", "--data", '{"source": "digits"}', "--steps", "a,b", env=env)
    )
