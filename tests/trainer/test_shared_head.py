"""One head for many architectures (paper §5.2): joint training against a shared DCC head,
updating that head once, and shipping it to every extractor.

Tiny settings on scikit-learn's digits: ResNet-8, WRN-10-1 and MobileNetV2 ×0.25, each
with a 16-channel junction projection, against a MobileNetV2 ×0.25 head after block 11.
"""

from __future__ import annotations

import json
import threading

import pytest
import torch

from partsbin.client.errors import Incompatible
from partsbin.parts.archs import build
from partsbin.parts.data import load_task
from partsbin.parts.describe import card_for
from partsbin.parts.jobs.settings import Settings
from partsbin.parts.jobs.shared_head import MultiArchSpec, UpdateHeadSpec
from partsbin.parts.jobs.train import TaskSpec
from partsbin.trainer.jobs import run_job
from partsbin.trainer.update_head import extend_classifier, fine_tune_head, frozen_reference
from partsbin.trainer.worker import Worker

OLD = ["0", "1", "2", "3", "4"]
ALL = [str(i) for i in range(10)]
J = 16
NETWORKS = [
    {"name": "resnet", "arch": {"name": "resnet_cifar", "config": {"depth": 8, "width": 8}}},
    {"name": "wrn", "arch": {"name": "wide_resnet", "config": {"depth": 10, "widen": 1}}},
    {"name": "mnv2", "arch": {"name": "mobilenetv2_cifar", "config": {"width_mult": 0.25}}},
]
HEAD = {"name": "mobilenetv2_cifar", "config": {"width_mult": 0.25}, "split": "block11"}

# Measured with these settings (update seeds 0..2; the script is in the closing note of issue 11): the
# old classes' accuracy through the reference extractor went from 95.7% (5-way, over the
# old head's 5 logits) to 90.7-93.0% (over all 10 logits), a drop of 2.7-5.0 points; 60
# steps instead of 150 dropped 5.7-8.7 points. The margin leaves 3 points over the worst seen.
OLD_CLASSES_MARGIN = 0.08


def multiarch_spec(steps: int = 60, **extra) -> dict:
    return {
        "kind": "train-multiarch",
        "name": "multi",
        "namespace": "lab",
        "task": {"name": "digits5", "data": {"source": "digits", "classes": OLD}},
        "networks": NETWORKS,
        "junction_channels": J,
        "head": HEAD,
        "settings": {"steps": steps, "batch_size": 32, "threads": 1, "test_limit": 400},
        **extra,
    }


def update_spec(steps: int = 150, **extra) -> dict:
    return {
        "kind": "update-head",
        "head": "lab/multi-shared-head@1",
        "reference_extractor": "lab/multi-wrn-extractor@1",
        "data": {"source": "digits", "classes": ALL},
        "classes": ALL,
        "settings": {"steps": steps, "batch_size": 32, "threads": 1, "lr": 0.02, "test_limit": 600},
        **extra,
    }


@pytest.fixture
def trained(live, client_for):
    reg = client_for(live, live.token("admin"))
    result = run_job(MultiArchSpec.model_validate(multiarch_spec()), reg)
    return reg, result


def test_joint_training_publishes_extractors_that_meet_the_shared_head(trained):
    reg, result = trained
    head_ref, *ext_refs = result.refs
    assert head_ref == "lab/multi-shared-head@1" and len(ext_refs) == 3
    head = reg.info(head_ref)
    assert head.role == "aux-dcc" and head.card.labels == OLD
    assert head.card.interface.junction.model_dump() == {"channels": J, "spatial": "any"}
    assert head.card.arch.name == "mobilenetv2_cifar" and head.card.arch.split == "block11"
    spatial = {}
    for ref in ext_refs:
        ext = reg.info(ref)
        assert ext.card.compat.anchors == [head.digest]
        assert ext.card.arch.config["junction_channels"] == J
        assert ext.card.interface.junction.channels == J
        assert ext.card.provenance.dataset.test["classes"] == OLD  # the benchmark rebuilds the test set
        spatial[ext.card.arch.name] = ext.card.interface.junction.spatial
        model = reg.assemble(ref, head_ref)
        x = torch.rand(16, 1, 8, 8)
        assert model(x).shape == (16, 5)
        assert ext.card.metrics["own_task_accuracy"] > 0.6, ext.card.metrics
    # Different resolutions at the junction: global pooling in the head absorbs them.
    assert spatial == {"resnet_cifar": 4, "wide_resnet": 4, "mobilenetv2_cifar": 2}
    listed = {m["component"].ref for m in reg.compatible(head=head_ref)}
    assert listed == set(ext_refs)


def test_junction_channels_must_agree():
    spec = multiarch_spec()
    spec["networks"] = [
        {"name": "resnet", "arch": {"name": "resnet_cifar", "config": {"depth": 8, "junction_channels": 8}}}
    ]
    with pytest.raises(ValueError, match="junction_channels is 8 but the run's junction_channels is 16"):
        MultiArchSpec.model_validate(spec)


def test_update_head_publishes_a_new_version_in_the_group(trained, live):
    import httpx

    reg, result = trained
    head_ref, *ext_refs = result.refs
    old_head = reg.info(head_ref)
    before = {r: reg.info(r).digest for r in ext_refs}
    out = run_job(UpdateHeadSpec.model_validate(update_spec()), reg)
    assert out.refs == ["lab/multi-shared-head@2"]
    new = reg.info("lab/multi-shared-head@2")
    assert new.card.labels == ALL and new.role == "aux-dcc"
    prov = new.card.provenance.model_dump()
    assert prov["updated_from"] == old_head.digest
    assert prov["reference_extractor"]["ref"] == "lab/multi-wrn-extractor@1"
    assert prov["labels_added"] == ALL[5:]
    assert old_head.digest in new.card.compat.anchors
    # No extractor was retrained: each name still has one version, the same bytes.
    for ref in ext_refs:
        name = ref.split("@")[0]
        assert [c.digest for c in reg.versions(name)] == [before[ref]]
    m = new.card.metrics
    assert m["old_classes_accuracy_after"] >= m["old_classes_accuracy_before"] - OLD_CLASSES_MARGIN, m
    assert m["accuracy"] > 0.6, m
    # Every extractor trained against the old head is listed for the new version...
    listed = {c["component"].ref for c in reg.compatible(head="lab/multi-shared-head@2")}
    assert listed == set(ext_refs)
    # ... and assembles with it.
    for ref in ext_refs:
        assert reg.assemble(ref, "lab/multi-shared-head@2")(torch.rand(16, 1, 8, 8)).shape == (16, 10)
    # One group, not a second one-member group for the new version; its page crosses the
    # extractors with both versions of the shared head (the heatmap's columns).
    group = old_head.digest.removeprefix("sha256:")
    assert [g["id"] for g in reg.groups()] == [group]
    page = httpx.get(f"{live.url}/ui/groups/{group}/heatmap").text
    assert "needs at least one" not in page and "0 of 6 pairs measured" in page, page


def test_update_of_the_classifier_only_leaves_the_rest_of_the_head_bit_identical(trained):
    from partsbin.parts.safetensors_format import load_state_dict

    reg, result = trained
    old = reg.pull(result.refs[0])
    out = run_job(UpdateHeadSpec.model_validate(update_spec(steps=40, train_layers="classifier")), reg)
    new = reg.pull(out.refs[0])
    before, after = load_state_dict(old.path), load_state_dict(new.path)
    changed = {k for k in after if before[k].shape != after[k].shape or not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("classifier") or k.startswith("fc") for k in changed), changed
    assert new.card.provenance.model_dump()["train_layers"] == "classifier"


def test_assemble_refuses_a_different_junction_naming_both_interfaces(trained):
    reg, result = trained
    net = build("resnet_cifar", depth=8, width=8, in_chans=1, num_classes=5, junction_channels=8)
    card = card_for(
        name="lab/narrow-extractor",
        role="extractor",
        arch="resnet_cifar",
        config={"depth": 8, "width": 8, "in_chans": 1, "num_classes": 5, "junction_channels": 8},
        split="stage2",
        input_size=8,
    )
    narrow = reg.push(net.extractor(), card)
    with pytest.raises(Incompatible) as info:
        reg.assemble(narrow.ref, result.refs[0])
    msg = str(info.value)
    assert "8 channels at 4x4" in msg and f"{J} channels at any" in msg
    assert narrow.ref in msg and result.refs[0] in msg


def test_fine_tuning_the_head_leaves_the_reference_extractor_bit_identical():
    task = load_task(TaskSpec(name="t", data={"source": "digits", "classes": ALL, "limit": 200}))
    net = build("wide_resnet", depth=10, widen=1, in_chans=1, num_classes=10, junction_channels=J)
    with torch.no_grad():
        net.train()
        net(torch.rand(16, 1, 8, 8))  # non-trivial running buffers
    extractor = frozen_reference(net.extractor(), "batch")
    before = {k: v.clone() for k, v in extractor.state_dict().items()}
    old = build("mobilenetv2_cifar", width_mult=0.25, in_chans=1, num_classes=5, junction_channels=J).head()
    head = build("mobilenetv2_cifar", width_mult=0.25, in_chans=1, num_classes=10, junction_channels=J).head()
    extend_classifier(old.state_dict(), head, 5)
    assert torch.equal(head.fc.weight[:5], old.fc.weight) and torch.equal(head.fc.bias[:5], old.fc.bias)
    settings = Settings(steps=5, batch_size=16, threads=1)
    fine_tune_head(extractor, head, task.train, torch.arange(10), settings, device=torch.device("cpu"))
    after = extractor.state_dict()
    assert any("running_mean" in k for k in before)
    assert all(torch.equal(after[k], before[k]) for k in before), "the reference extractor changed"
    assert all(p.grad is None and not p.requires_grad for p in extractor.parameters())
    assert not torch.equal(head.fc.weight[:5], old.fc.weight), "the head did not train"


def test_update_spec_checks():
    with pytest.raises(ValueError, match="namespace"):
        UpdateHeadSpec.model_validate({**update_spec(), "head": "sha256:" + "a" * 64})
    with pytest.raises(ValueError, match="published under its name, in namespace 'lab'"):
        UpdateHeadSpec.model_validate({**update_spec(), "namespace": "other"})
    from partsbin.trainer.update_head import updated_labels

    assert updated_labels(["b", "a"], ["a", "c", "b"]) == ["b", "a", "c"]
    with pytest.raises(ValueError, match=r"leaves out \['b'\]"):
        updated_labels(["b", "a"], ["a", "c"])


def test_train_and_update_through_the_worker(live, client_for):
    admin = client_for(live, live.token("admin"))
    first = admin.submit(multiarch_spec(steps=2))
    worker = Worker(client_for(live, live.token("publish", ["lab"])), name="w", poll_seconds=0.1)
    t = threading.Thread(target=worker.run, kwargs={"exit_when_idle": True})
    t.start()
    t.join(120)
    assert first.refresh().status == "succeeded", first.error
    assert first.result.networks["wrn"].arch == "wide_resnet"
    second = admin.update_head(
        "lab/multi-shared-head@1",
        "lab/multi-wrn-extractor@1",
        data={"source": "digits", "classes": ALL},
        classes=ALL,
        settings={"steps": 2, "batch_size": 16, "threads": 1, "test_limit": 100},
        wait=False,
    )
    t = threading.Thread(target=worker.run, kwargs={"exit_when_idle": True})
    t.start()
    t.join(120)
    job = second.refresh()
    assert job.status == "succeeded", job.error
    assert job.refs == ["lab/multi-shared-head@2"] and job.result.classes_after == 10
    assert len(admin.compatible(head="lab/multi-shared-head@2")) == 3


def test_cli_update_head_then_bench_every_extractor_on_the_new_task(trained, live, tmp_path):
    from tests.client.test_cli import cli

    reg, result = trained
    head_ref, *ext_refs = result.refs
    env = {"PARTSBIN_URL": live.url, "PARTSBIN_TOKEN": live.token("admin")}
    done = cli(
        "update-head",
        "--head",
        head_ref,
        "--reference-extractor",
        "lab/multi-wrn-extractor@1",
        "--data",
        '{"source": "digits"}',
        "--classes",
        ",".join(ALL),
        "--test-limit",
        "600",
        "--steps",
        "60",
        "--threads",
        "1",
        "--lr",
        "0.02",
        "--batch-size",
        "32",
        "--local",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "lab/multi-shared-head@2" in done.stdout
    args = ["bench", "--head", "lab/multi-shared-head@2", "--head-task", "--latency", "--batch-size", "64"]
    args += ["--threads", "1"]
    for ref in ext_refs:
        args += ["--extractor", ref]
    out = tmp_path / "bench.json"
    done = cli(*args, "--json", str(out), env=env)
    assert done.returncode == 0, done.stderr
    cells = json.loads(out.read_text())["cells"]
    assert {c["extractor"] for c in cells} == set(ext_refs)
    for c in cells:
        # The full new task: every class of the updated head, the test images of all ten.
        assert c["classes"] == 10 and c["samples"] == 600, c
        assert c["latency_ms"] > 0 and c["images_per_s"] > 0
    by = {c["extractor"]: c["accuracy"] for c in cells}
    assert by["lab/multi-wrn-extractor@1"] > 0.5, by  # 60 steps: 76-81% measured
    assert "ms per batch of 64" in done.stdout
    # A mismatched --data/--head-task pair is refused in one line.
    bad = cli(*args, "--data", "x=y", env=env)
    assert bad.returncode != 0 and "--head-task and --data" in bad.stderr
