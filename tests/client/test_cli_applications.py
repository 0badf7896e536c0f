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


def test_a_verb_submits_waits_for_a_worker_and_prints_the_result_and_jobs_show_reads_it(live, client_for):
    import threading

    from partsbin.trainer.worker import Worker

    token = live.token("publish", ["lab"])
    reg = client_for(live, token)
    rp, ext, head = _parts(reg)
    env = {"PARTSBIN_URL": live.url, "PARTSBIN_TOKEN": token}
    worker = Worker(client_for(live, token), name="w", poll_seconds=0.1)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        done = cli(
            "adapt", "-e", ext.ref, "--rp-head", rp.ref, "--data", json.dumps(DIGITS_012), "--steps", "3",
            "--batch-size", "16", "--threads", "1", env=env,
        )  # fmt: skip
    finally:
        worker.stop.set()
        thread.join(60)
    assert done.returncode == 0, done.stderr
    # Named after the extractor, in its namespace; the result as percentages.
    assert "submitted adapt job lab/e-adapted as job" in done.stderr
    assert "published lab/e-adapted-extractor@1" in done.stdout and "as-is: " in done.stdout
    assert "%" in done.stdout and "trained 3 steps in" in done.stdout
    # The adapted extractor joined its group while a worker was around: the registry
    # queued its new pairs too (an evaluate job of origin "registry").
    job = next(j for j in reg.jobs.list() if j["kind"] == "adapt")
    assert {j["origin"] for j in reg.jobs.list() if j["kind"] == "evaluate"} <= {"registry"}
    shown = cli("jobs", "show", str(job["id"]), env=env)
    assert f"job {job['id']}: adapt lab/e-adapted (succeeded)" in shown.stdout
    assert "adapted: " in shown.stdout and "rp_head: lab/rp" in shown.stdout and "null" not in shown.stdout
    listed = cli("jobs", "list", env=env)
    assert "adapt" in listed.stdout and "succeeded" in listed.stdout
    page = client_for(live)._http.get(f"/ui/jobs/{job['id']}").text
    assert "adapt" in page and "as-is: " in page and "rp_head: lab/rp" in page
    # --no-wait returns at once with the job's id.
    queued = cli("transfer", "-e", ext.ref, "-H", head.ref, "--data", json.dumps(DIGITS_012), "--no-wait", env=env)
    assert queued.returncode == 0 and "submitted transfer job lab/e-transfer as job" in queued.stderr, queued.stderr


def test_stitch_of_a_part_whose_card_records_no_data_says_which_option_to_give(live, client_for):
    token = live.token("publish", ["lab"])
    reg = client_for(live, token)
    _, ext, head = _parts(reg)  # pushed by hand: their cards record no data
    env = {"PARTSBIN_URL": live.url, "PARTSBIN_TOKEN": token}
    args = ["stitch", "--extractor", ext.ref, "--head", head.ref, "--name", "lab/e-to-h", "--local"]
    refused = cli(*args, env=env)
    assert refused.returncode == 1, refused.stderr
    assert "lab/e's card does not record its training data" in refused.stderr
    assert "--data DATASPEC" in refused.stderr and "bug" not in refused.stderr
    no_test = cli(*args, "--data", json.dumps(DIGITS_012), "--steps", "2", env=env)
    assert no_test.returncode == 1 and "does not record its test set" in no_test.stderr
    assert "--test DATASPEC" in no_test.stderr
    done = cli(*args, "--data", json.dumps(DIGITS_012), "--test", json.dumps(DIGITS_012), "--steps", "2", env=env)
    assert done.returncode == 0, done.stderr
    assert "published lab/e-to-h" in done.stdout
