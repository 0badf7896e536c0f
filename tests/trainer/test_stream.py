"""Streamed image data (a data spec's ``stream``): image folders and registered image
tars read lazily through a DataLoader with worker processes, at any size; a train job
on one, and the benchmark streaming its test set. Tiny generated folders in tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from partsbin.parts.data import StreamedImages, load_data, load_raw, load_split
from partsbin.parts.data.access import DataAccess, DataOutsideRoots, LocalDataset, data_access
from partsbin.parts.data.spec import DataSpec
from partsbin.parts.data.stream import NeedsImagesInMemory, TrainingBatches, UnreadableImage

CLASSES = ("cat", "dog", "eel")


def _folder(root: Path, n: int = 4, grey: bool = False) -> Path:
    """``root/{train,test}/<class>/*.png``, of differing sizes, each image its own."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, cls in enumerate(CLASSES):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                h, w = 12 + 3 * i, 20 - 2 * i
                pixels = rng.integers(0, 256, (h, w) if grey else (h, w, 3), dtype=np.uint8)
                pixels[..., : w // 2] //= 1 + c  # a left half darker by class: asymmetric, learnable
                suffix = ".jpg" if (i == 1 and not grey) else ".png"
                Image.fromarray(pixels).save(root / split / cls / f"{i}{suffix}")
    return root


def _spec(path: Path | str, **stream: Any) -> DataSpec:
    return DataSpec.model_validate({"source": "folder", "path": str(path), "stream": {"size": 8, **stream}})


def _first(images: StreamedImages, seed: int = 1, batch: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    batches = images.training_batches(batch, seed=seed)
    try:
        x, y = next(batches)
    finally:
        batches.close()
    return x, y


def test_a_streamed_folder_gives_shapes_labels_and_classes_at_any_size(tmp_path):
    _folder(tmp_path / "pics")
    train = load_data(_spec(tmp_path / "pics", workers=2), "train")
    assert isinstance(train, StreamedImages)
    assert train.classes == list(CLASSES) and len(train) == 12
    assert train.y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert (train.channels, train.side) == (3, 8)
    batches = list(train.image_batches(5))
    assert [tuple(b.shape) for b in batches] == [(5, 3, 8, 8), (5, 3, 8, 8), (2, 3, 8, 8)]
    assert all(0 <= float(b.min()) and float(b.max()) <= 1 for b in batches)
    x, y = _first(train)
    assert x.shape == (6, 3, 8, 8) and y.dtype == torch.long and set(y.tolist()) <= {0, 1, 2}
    # Selections work on the file list; greyscale on request (or from grey files).
    picked = load_data(
        DataSpec.model_validate(
            {"source": "folder", "path": str(tmp_path / "pics"), "classes": ["eel", "cat"], "limit": 5,
             "stream": {"size": 10, "channels": 1, "workers": 0}}
        ),
        "test",
    )  # fmt: skip
    assert picked.classes == ["eel", "cat"] and picked.y.tolist() == [1, 1, 1, 1, 0]
    assert next(picked.image_batches(8)).shape == (5, 1, 10, 10)
    _folder(tmp_path / "grey", grey=True)
    grey = load_data(_spec(tmp_path / "grey", channels=1, workers=0), "train")
    assert next(grey.image_batches(2)).shape == (2, 1, 8, 8)
    # What a card records: the source split's digest and the recipe's (selections, stream).
    assert train.source_digest and train.source_digest.startswith("sha256:")
    assert train.data_digest and picked.data_digest and train.data_digest != picked.data_digest
    # A kind that needs the split as one tensor says so, rather than read it whole.
    for whole in (load_split, load_raw):
        with pytest.raises(NeedsImagesInMemory, match="leave 'stream' out"):
            whole(_spec(tmp_path / "pics"), "train")
    with pytest.raises(NeedsImagesInMemory, match="leave 'stream' out"):
        train.x  # noqa: B018


def test_crop_and_flip_are_seeded_per_image_whatever_the_workers(tmp_path):
    _folder(tmp_path / "pics")
    path = tmp_path / "pics"
    augmented = {"crop": "random-resized", "scale": [0.3, 0.6], "flip": True}
    one = load_data(_spec(path, workers=0, **augmented), "train")
    two = load_data(_spec(path, workers=2, **augmented), "train")
    x0, y0 = _first(one, seed=5)
    x2, y2 = _first(two, seed=5)
    assert torch.equal(y0, y2) and torch.equal(x0, x2), "the same images whatever the number of workers"
    assert torch.equal(_first(one, seed=5)[0], x0), "and in every run"
    assert not torch.equal(_first(one, seed=6)[0], x0), "another seed draws other crops"
    # The crop is a crop: not the whole image resized. The test split is never augmented.
    plain = load_data(_spec(path, workers=0), "train")
    whole = torch.cat(list(plain.image_batches(12)))
    assert not any(torch.allclose(x0[k], whole[j]) for k in range(6) for j in range(12))
    test_a = torch.cat(list(load_data(_spec(path, workers=0, **augmented), "test").image_batches(12)))
    test_b = torch.cat(list(load_data(_spec(path, workers=0), "test").image_batches(12)))
    assert torch.equal(test_a, test_b)
    # A flip alone mirrors about half of the images, exactly.
    flip = load_data(_spec(path, workers=0, flip=True), "train")
    batches = flip.training_batches(12, seed=3)
    xf, yf = next(batches)
    batches.close()
    order = [i for i, _ in next(iter(TrainingBatches(12, 12, seed=3)))]
    assert torch.equal(yf, flip.y[order])
    mirrored = [torch.equal(xf[k], whole[j].flip(-1)) for k, j in enumerate(order)]
    kept = [torch.equal(xf[k], whole[j]) for k, j in enumerate(order)]
    assert all(m or s for m, s in zip(mirrored, kept, strict=True)) and 0 < sum(mirrored) < 12


def test_paths_outside_the_data_roots_are_refused(tmp_path):
    root = tmp_path / "root"
    _folder(root / "pics")
    _folder(tmp_path / "outside")
    with data_access(DataAccess(roots=(root,))):
        assert len(load_data(_spec("pics", workers=0), "train")) == 12
        for path in ("../outside", str(tmp_path / "outside")):
            with pytest.raises(DataOutsideRoots):
                load_data(_spec(path, workers=0), "train")
        # A link inside the folder to an image outside: refused when the list is made.
        (root / "pics" / "train" / "cat" / "9.png").symlink_to(tmp_path / "outside" / "train" / "cat" / "0.png")
        with pytest.raises(DataOutsideRoots, match="9.png"):
            load_data(_spec("pics", workers=0), "train")
    # A submitted spec is checked where it is validated, as every other path.
    with pytest.raises(ValueError, match="may not contain '..'"):
        DataSpec.model_validate(
            {"source": "folder", "path": "../x", "stream": {"size": 8}}, context={"data_roots": [str(root)]}
        )
    with pytest.raises(ValueError, match="stream reads image folders"):
        DataSpec.model_validate({"source": "npz", "path": "d.npz", "stream": {"size": 8}})
    for bad in ({"size": 0}, {"size": 8, "workers": 1000}, {"size": 8, "scale": [0.9, 0.2]}):
        with pytest.raises(ValueError):
            DataSpec.model_validate({"source": "folder", "path": "p", "stream": bad})


def test_a_corrupt_image_is_named_in_the_error(tmp_path):
    _folder(tmp_path / "pics")
    (tmp_path / "pics" / "train" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    for workers in (0, 2):
        images = load_data(_spec(tmp_path / "pics", workers=workers), "train")
        with pytest.raises(UnreadableImage) as failed:
            list(images.image_batches(4))
        message = str(failed.value)
        assert message.startswith("dog/broken.png: not a readable image") and "replace or remove" in message
        assert "Traceback" not in message


def test_the_digest_changes_when_one_image_changes_and_not_with_the_copy(tmp_path):
    import shutil

    _folder(tmp_path / "a")
    first = load_data(_spec(tmp_path / "a", workers=0), "train").source_digest
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    assert load_data(_spec(tmp_path / "copy", workers=0), "train").source_digest == first
    target = tmp_path / "copy" / "train" / "eel" / "3.png"
    pixels = np.array(Image.open(target))
    pixels[0, 0, 0] ^= 1
    Image.fromarray(pixels).save(target)
    assert load_data(_spec(tmp_path / "copy", workers=0), "train").source_digest != first
    # The test split has a digest of its own.
    assert load_data(_spec(tmp_path / "a", workers=0), "test").source_digest != first


def test_a_registered_image_tar_streams_like_its_folder(tmp_path):
    from partsbin.parts.datasets import pack_folder

    _folder(tmp_path / "pics")
    pack_folder(tmp_path / "pics", tmp_path / "pics.tar")
    local = LocalDataset("lab/pics@1", "sha256:" + "0" * 64, tmp_path / "pics.tar", "image-tar")
    spec = DataSpec.model_validate({"dataset": "lab/pics@1", "stream": {"size": 8, "workers": 2, "flip": True}})
    with data_access(DataAccess(datasets=lambda ref: local)):
        from_tar = load_data(spec, "train")
    from_folder = load_data(_spec(tmp_path / "pics", workers=0, flip=True), "train")
    assert from_tar.classes == from_folder.classes and torch.equal(from_tar.y, from_folder.y)
    assert from_tar.source_digest == from_folder.source_digest and from_tar.dataset_digest == local.digest
    assert torch.equal(_first(from_tar, seed=2)[0], _first(from_folder, seed=2)[0])


def test_a_train_job_on_a_streamed_folder_publishes_and_the_benchmark_streams_its_test_set(live, client_for, tmp_path):
    from partsbin.client.eval_data import test_set
    from partsbin.parts.jobs.train import TrainSpec
    from partsbin.trainer.jobs import run_job

    _folder(tmp_path / "pics", n=6)
    reg = client_for(live, live.token("publish", ["lab"]))
    data = {"source": "folder", "path": str(tmp_path / "pics"),
            "stream": {"size": 16, "crop": "random-resized", "flip": True, "workers": 2}}  # fmt: skip
    spec = TrainSpec.model_validate(
        {
            "name": "streamed",
            "namespace": "lab",
            "scheme": "independent",
            "arch": {"name": "resnet_cifar", "config": {"depth": 8, "width": 4}},
            "tasks": [{"name": "pics", "data": data}],
            "settings": {"steps": 4, "batch_size": 8, "threads": 1, "eval_batch_size": 5},
        }
    )
    result = run_job(spec, reg)
    assert result.train is not None and result.train.steps == 4
    assert result.tasks["pics"].test_images == 18
    ext_ref = next(r for r in result.refs if "-extractor@" in r)
    head_ref = next(r for r in result.refs if "-head@" in r)
    ext = reg.info(ext_ref)
    recorded = ext.card.provenance.dataset
    assert recorded.test["stream"]["size"] == 16 and recorded.test["source_digest"].startswith("sha256:")
    # The benchmark rebuilds the test set from the card, streamed, and checks its digest.
    _, test = test_set(reg.pull(ext_ref))
    assert isinstance(test, StreamedImages) and len(test) == 18
    cell = reg.bench([ext_ref], [head_ref], post=False, threads=1, batch_size=5).cells[0]
    assert cell.samples == 18 and cell.accuracy == pytest.approx(result.tasks["pics"].own_task_accuracy)
    # A changed test image is not the data the card records.
    target = tmp_path / "pics" / "test" / "cat" / "0.png"
    pixels = np.array(Image.open(target))
    pixels[0, 0, 0] ^= 1
    Image.fromarray(pixels).save(target)
    from partsbin import UsageError

    with pytest.raises(UsageError, match="is not the data"):
        reg.bench([ext_ref], [head_ref], post=False, threads=1)
