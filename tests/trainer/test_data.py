"""Loaders read the standard formats from disk; nothing is downloaded."""

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from partsbin.parts.data import DataMissing, load_split, load_task
from partsbin.parts.data.sources import load_source
from partsbin.parts.data.spec import DataSpec, Transform
from partsbin.parts.jobs.train import TaskSpec


def test_idx_gz_and_plain(tmp_path):
    imgs = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    labels = np.array([2, 0, 1], dtype=np.uint8)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, 3) + struct.pack(">III", 3, 4, 4) + imgs.tobytes())
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(
        struct.pack(">HBB", 0, 8, 1) + struct.pack(">I", 3) + labels.tobytes()
    )
    data = load_source("fashion-mnist", "train", str(tmp_path))
    assert data.x.shape == (3, 1, 4, 4) and torch.allclose(data.x[0, 0, 0, 1], torch.tensor(1 / 255))
    assert data.y.tolist() == [2, 0, 1] and data.classes[0] == "t-shirt"


def test_missing_data_says_where_and_how(tmp_path):
    with pytest.raises(DataMissing, match=r"apt-get install dataset-fashion-mnist"):
        load_source("fashion-mnist", "train", str(tmp_path))
    with pytest.raises(DataMissing, match="CIFAR-10 binary files not found"):
        load_source("cifar10", "train", str(tmp_path))
    with pytest.raises(DataMissing, match="STL-10"):
        load_source("stl10", "test", str(tmp_path))


def test_cifar10_cifar100_and_stl10_binaries(tmp_path):
    rng = np.random.default_rng(0)
    rec = np.concatenate([np.array([[3]], dtype=np.uint8), rng.integers(0, 255, (1, 3072), dtype=np.uint8)], 1)
    (tmp_path / "test_batch.bin").write_bytes(np.repeat(rec, 2, 0).tobytes())
    c10 = load_source("cifar10", "test", str(tmp_path))
    assert c10.x.shape == (2, 3, 32, 32) and c10.y.tolist() == [3, 3] and c10.classes[3] == "cat"
    assert abs(float(c10.x[0, 0, 0, 0]) - rec[0, 1] / 255) < 1e-6
    rec100 = np.concatenate([np.array([[1, 42]], dtype=np.uint8), rng.integers(0, 255, (1, 3072), dtype=np.uint8)], 1)
    (tmp_path / "train.bin").write_bytes(rec100.tobytes())
    assert load_source("cifar100", "train", str(tmp_path)).y.tolist() == [42]
    x = rng.integers(0, 255, (2, 3, 96, 96), dtype=np.uint8)
    (tmp_path / "test_X.bin").write_bytes(x.transpose(0, 1, 3, 2).tobytes())  # column-major on disk
    (tmp_path / "test_y.bin").write_bytes(np.array([1, 10], dtype=np.uint8).tobytes())
    stl = load_source("stl10", "test", str(tmp_path))
    assert stl.y.tolist() == [0, 9] and abs(float(stl.x[1, 2, 5, 7]) - x[1, 2, 5, 7] / 255) < 1e-6


def test_image_folder_and_npz(tmp_path):
    for cls, value in (("cat", 10), ("dog", 200)):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((6, 6), value + i, dtype=np.uint8)).save(tmp_path / "train" / cls / f"{i}.png")
    folder = load_source("folder", "train", str(tmp_path))
    assert folder.classes == ["cat", "dog"] and folder.y.tolist() == [0, 0, 1, 1] and folder.x.shape == (4, 1, 6, 6)
    np.savez(
        tmp_path / "d.npz",
        x_train=np.zeros((5, 7, 7, 3), np.uint8),
        y_train=np.arange(5) % 2,
        classes=np.array(["no", "yes"]),
    )
    npz = load_source("npz", "train", str(tmp_path / "d.npz"))
    assert npz.x.shape == (5, 3, 7, 7) and npz.classes == ["no", "yes"]


def test_selections_remap_labels_by_name_and_shift_domains():
    spec = DataSpec(
        source="digits",
        classes=["7", "3"],
        indices="odd",
        transforms=[Transform(op="resize", size=4, back_to=8), Transform(op="invert"), Transform(op="grey_to_rgb")],
        limit=20,
    )
    data = load_split(spec, "train")
    assert data.classes == ["7", "3"] and set(data.y.tolist()) <= {0, 1} and len(data) == 20
    assert data.x.shape[1:] == (3, 8, 8)
    with pytest.raises(ValueError, match="classes \\['x'\\] are not in this data set"):
        load_split(DataSpec(source="digits", classes=["x"]), "train")


def test_named_pairs_follow_design():
    a = load_task(TaskSpec(name="a", pair="fashion-mnist", pair_task="a"))
    b = load_task(TaskSpec(name="b", pair="fashion-mnist", pair_task="b"))
    assert a.classes == ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag"]
    assert b.classes[0] == "trouser" and b.classes[-1] == "ankle-boot"
    assert len(set(a.classes) & set(b.classes)) == 8
    assert a.train_spec.indices == "even" and b.train_spec.indices == "odd"
    assert [t.op for t in b.test_spec.transforms] == ["resize", "invert"] and b.test_spec.transforms[0].size == 14
    assert a.train.x.mean() < 0.5 < b.train.x.mean()  # inverted intensities
    da = load_task(TaskSpec(name="a", pair="digits", pair_task="a"))
    assert (
        da.classes == [str(i) for i in range(9)]
        and len(da.test) + len(load_task(TaskSpec(name="b", pair="digits", pair_task="b")).test) > 0
    )
