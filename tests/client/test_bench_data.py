"""The benchmark measures as the paper does and its data references travel: batch
composition recorded, own-task figures equal to the trainer's, local copies checked
against the content digest the card records, threads chosen and reported."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from partsbin.parts.data import DataMissing, Images, load_split
from partsbin.parts.data.spec import DataSpec, Transform
from partsbin.parts.data.transforms import apply_transforms
from partsbin.parts.evaluation import EvalSettings, select_eval_images
from partsbin.parts.jobs.train import TrainSpec

ARCH = {"name": "resnet_cifar", "config": {"depth": 8, "width": 4}}


def _npz(path: Path, seed: int) -> Path:
    """A small four-class data set of 8x8 images, written as a user would."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), 40)
    x = (rng.random((160, 8, 8)) * 60 + y[:, None, None] * 45).astype(np.uint8)
    np.savez(path, x_train=x, y_train=y, x_test=x[::2], y_test=y[::2], classes=np.array(["w", "x", "y", "z"]))
    return path


def test_batch_composition_is_the_common_classes_shuffled():
    images = Images(torch.rand(20, 1, 4, 4), torch.arange(20) % 4, ["a", "b", "c", "d"])
    common = select_eval_images(images, ["b", "c", "z"], EvalSettings())
    assert sorted(common.y.tolist()) == sorted([1] * 5 + [2] * 5)
    assert common.y.tolist() == select_eval_images(images, ["b", "c", "z"], EvalSettings()).y.tolist()
    everything = select_eval_images(images, ["b", "c"], EvalSettings(batch_composition="all-classes"))
    assert len(everything) == 20 and everything.y.tolist() != images.y.tolist()  # shuffled
    other_seed = select_eval_images(images, ["b", "c"], EvalSettings(batch_composition="all-classes", shuffle_seed=1))
    assert other_seed.y.tolist() != everything.y.tolist()


def test_domain_shift_transforms_are_declared_and_deterministic():
    x = Images(torch.rand(6, 1, 12, 12), torch.zeros(6, dtype=torch.long), ["a"])
    for op in (
        {"op": "contrast", "factor": 0.5},
        {"op": "brightness", "delta": -0.2},
        {"op": "noise", "sigma": 0.2, "seed": 4},
        {"op": "blur", "sigma": 1.5},
    ):
        t = Transform.model_validate(op)
        a, b = apply_transforms(x, [t]).x, apply_transforms(x, [t]).x
        assert torch.equal(a, b) and a.shape == x.x.shape, op
        assert 0 <= float(a.min()) and float(a.max()) <= 1, op
        assert not torch.equal(a, x.x), op
    contrast = apply_transforms(x, [Transform(op="contrast", factor=0.5)]).x
    assert float(contrast.std()) < float(x.x.std())
    blurred = apply_transforms(x, [Transform(op="blur", sigma=1.5)]).x
    assert float(blurred.diff(dim=-1).abs().mean()) < float(x.x.diff(dim=-1).abs().mean())
    noisy = [apply_transforms(x, [Transform(op="noise", sigma=0.2, seed=s)]).x for s in (1, 2)]
    assert not torch.equal(*noisy)
    for bad in ({"op": "noise"}, {"op": "contrast"}, {"op": "blur", "sigma": -1}):
        with pytest.raises(ValueError):
            Transform.model_validate(bad)


def test_one_task_dcc_needs_its_labels(live, client_for):
    spec = {
        "name": "r",
        "namespace": "lab",
        "tasks": [{"name": "a", "pair": "digits", "pair_task": "a"}],
        "methods": ["DCC"],
        "scheme": "incremental",
    }
    with pytest.raises(ValueError, match="dcc_labels"):
        TrainSpec.model_validate(spec)
    TrainSpec.model_validate({**spec, "dcc_labels": ["1", "2"]})
    from partsbin import InvalidUpload

    reg = client_for(live, live.token("publish", ["lab"]))
    with pytest.raises(InvalidUpload, match="dcc_labels"):
        reg.jobs.submit(spec)


def _train(live, tmp_path: Path, spec: dict) -> list[str]:
    """`partsbin train --local` as a user runs it, with stderr not a terminal."""
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "PARTSBIN_URL": live.url, "PARTSBIN_TOKEN": live.token("publish", ["lab"])}
    done = subprocess.run(
        [sys.executable, "-m", "partsbin", "train", str(path), "--local"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    # Not a terminal: plain progress lines instead of a bar, from the start.
    assert f"{spec['name']}: starting" in done.stderr and "loss" in done.stderr, done.stderr
    return [line.split()[-1] for line in done.stdout.splitlines() if line.startswith("published ")]


def test_own_task_figures_and_data_that_travels(live, client_for, tmp_path):
    data = _npz(tmp_path / "mine.npz", seed=0)
    spec = {
        "name": "ub",
        "namespace": "lab",
        "arch": ARCH,
        "scheme": "upper-bound",
        "tasks": [
            {"name": "a", "data": {"source": "npz", "path": str(data), "classes": ["w", "x", "y"]}},
            {
                "name": "b",
                "data": {
                    "source": "npz",
                    "path": str(data),
                    "classes": ["x", "y", "z"],
                    "transforms": [{"op": "noise", "sigma": 0.05, "seed": 1}],
                },
            },
        ],
        "settings": {"steps": 6, "batch_size": 16, "eval_batch_size": 16},
    }
    refs = _train(live, tmp_path, spec)
    reg = client_for(live, live.token("publish", ["lab"]))
    ext = {t: next(r for r in refs if f"-{t}-extractor@" in r) for t in "ab"}
    head = {t: next(r for r in refs if f"-{t}-head@" in r) for t in "ab"}
    result = reg.bench(list(ext.values()), list(head.values()), batch_size=16, threads=1)
    assert result.threads == 1 and torch.get_num_threads() != 0
    for t in "ab":
        card = reg.info(ext[t]).card
        # The upper bound's card records the restricted test set it was evaluated on, and
        # the benchmark's own-task figure is the trainer's to the image.
        assert card.provenance.dataset.test["classes"] == ["x", "y"]
        cell = result.cell(ext[t], head[t])
        assert cell.own_task and cell.samples == card.metrics["test_examples"]
        assert cell.accuracy == pytest.approx(card.metrics["own_task_accuracy"])
    evals = reg.evaluations(extractor=ext["a"])
    assert {e["details"]["batch_composition"] for e in evals} == {"common-classes"}
    assert all(e["details"]["shuffle_seed"] == 0 and e["batch_size"] == 16 for e in evals)
    assert "common-class images" in str(result.rich_table().title)

    # The file moves: a one-line error naming the task and how to point at a copy.
    moved = tmp_path / "elsewhere" / "copy.npz"
    moved.parent.mkdir()
    shutil.move(data, moved)
    with pytest.raises(DataMissing, match=r"task a.*--data a=PATH"):
        reg.bench([ext["a"]], [head["a"]], post=False)
    again = reg.bench([ext["a"]], [head["a"]], data={"a": str(moved)}, post=False, batch_size=16)
    assert again.cells[0].accuracy == pytest.approx(result.cell(ext["a"], head["a"]).accuracy)
    # A different file under the same name is refused: the card records what the data was.
    _npz(tmp_path / "other.npz", seed=1)
    from partsbin import UsageError

    with pytest.raises(UsageError, match="not the data"):
        reg.bench([ext["a"]], [head["a"]], data={"a": str(tmp_path / "other.npz")}, post=False)
    # The same from the CLI: one line, no traceback.
    env = {**os.environ, "PARTSBIN_URL": live.url}
    done = subprocess.run(
        [sys.executable, "-m", "partsbin", "bench", "-e", ext["a"], "-H", head["a"], "--no-post"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr and "--data a=PATH" in done.stderr
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "partsbin",
            "bench",
            "-e",
            ext["a"],
            "-H",
            head["a"],
            "--no-post",
            "--data",
            f"a={moved}",
            "--json",
            "-",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["batch_composition"] == "common-classes"


def test_missing_builtin_data_says_where_it_looked(tmp_path):
    with pytest.raises(DataMissing, match="t10k-images"):
        load_split(DataSpec(source="fashion-mnist", path=str(tmp_path)), "test")


def test_many_heads_share_the_extractors_features_with_the_same_result():
    from partsbin.parts.archs import build
    from partsbin.parts.evaluation import evaluate_heads, evaluate_pair

    torch.manual_seed(0)
    images = Images(torch.rand(90, 1, 8, 8), torch.arange(90) % 6, list("abcdef"))
    net = build("resnet_cifar", depth=8, width=4, in_chans=1, num_classes=6)
    heads = [
        (build("resnet_cifar", depth=8, width=4, in_chans=1, num_classes=len(labels)).head(), labels)
        for labels in (list("abcdef"), list("abc"), list("cba"), list("xyz"), list("defgh"))
    ]
    for settings in (EvalSettings(batch_size=16), EvalSettings(batch_size=16, batch_composition="all-classes")):
        together = evaluate_heads(net.extractor(), heads, images, settings)
        alone = [evaluate_pair(net.extractor(), h, images, labels, settings) for h, labels in heads]
        assert together == alone
