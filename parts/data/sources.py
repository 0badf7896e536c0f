"""Loaders for the data sets users have on disk. Nothing is downloaded: a missing data
set is an error that says where it looked and how to install it.

Every loader returns :class:`Images`: float32 images in [0, 1] shaped N×C×H×W, int64
labels, and the class names (labels are strings everywhere in partsbin).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from partsbin.parts.data.access import confined, reading_trusted_files, resolve_dataset, resolve_path
from partsbin.parts.errors import PartsbinError
from partsbin.parts.extras import require

__all__ = [
    "Images",
    "DataMissing",
    "content_digest",
    "load_source",
    "load_dataset",
    "load_image_tar",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_CLASSES",
]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


class DataMissing(PartsbinError, FileNotFoundError):
    """A data set that is not where the spec says; the message says where it looked."""


@dataclass
class Images:
    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    #: sha256 of the source split these images were selected from (see :func:`content_digest`):
    #: what identifies the data wherever its file lies.
    source_digest: str | None = None
    #: For a registered dataset: the digest of its file in the registry (what a card records).
    dataset_digest: str | None = None
    #: How these images were made from the source (``prepare``): its digest, the class and
    #: index selections and the transforms. None once they are not a prefix of that.
    recipe: dict[str, Any] | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def channels(self) -> int:
        return int(self.x.shape[1])

    @property
    def side(self) -> int:
        return int(self.x.shape[-1])

    def image_batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The images in order, ``batch_size`` at a time."""
        for start in range(0, len(self), batch_size):
            yield self.x[start : start + batch_size]

    def select_classes(self, keep: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> Images:
        """The images ``keep`` marks, with new ``labels`` (one per kept image) and ``classes``."""
        return Images(self.x[keep], labels, classes, self.source_digest, self.dataset_digest)

    def subset(self, index: torch.Tensor | np.ndarray | range) -> Images:
        # A prefix (a test limit) is still described by the recipe and its length.
        prefix = isinstance(index, range) and index.start == 0 and index.step == 1
        index = torch.as_tensor(index, dtype=torch.long)
        return Images(
            self.x[index],
            self.y[index],
            list(self.classes),
            self.source_digest,
            self.dataset_digest,
            self.recipe if prefix else None,
        )

    @property
    def data_digest(self) -> str | None:
        """What these images are, wherever they were made: ``sha256:`` of the source's
        content digest, the selections, the transforms and the number of images. The
        same test set gives the same digest on any machine (the pixels after a resize may
        differ in their last bits between CPUs; this does not)."""
        if self.recipe is None or self.source_digest is None:
            return None
        text = json.dumps({**self.recipe, "source": self.source_digest, "n": len(self)}, sort_keys=True)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def content_digest(images: Images) -> str:
    """``sha256:`` of the decoded images, labels and class names: the same data gives the
    same digest from a .gz or a plain IDX file, a copy anywhere, or another machine."""
    h = hashlib.sha256()
    h.update(images.x.contiguous().numpy().tobytes())
    h.update(images.y.contiguous().numpy().tobytes())
    h.update("\n".join(images.classes).encode())
    return f"sha256:{h.hexdigest()}"


def _u8(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32)).div_(255.0)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return confined(folder / name)
    raise DataMissing(
        f"{stem}[.gz] not found in {folder}. Install Fashion-MNIST with `apt-get install dataset-fashion-mnist` "
        f"(files go to {FASHION_MNIST_DIR}) or give the folder of your IDX files as 'path'"
    )


def load_idx(folder: Path, split: str, classes: list[str] | None = None) -> Images:
    prefix = "train" if split == "train" else "t10k"
    x = _read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    y = _read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    names = classes or [str(i) for i in range(int(y.max()) + 1)]
    return Images(_u8(x)[:, None], torch.from_numpy(y.astype(np.int64)), names)


def load_digits(split: str) -> Images:
    """scikit-learn's digits. It has no test split: a stratified 50/50 split, seed 0."""
    sk_load = require("sklearn.datasets", "train", "scikit-learn's digits").load_digits
    train_test_split = require("sklearn.model_selection", "train", "scikit-learn's digits").train_test_split

    d = sk_load()
    idx = np.arange(len(d.target))
    train, test = train_test_split(idx, test_size=0.5, random_state=0, stratify=d.target)
    pick = np.sort(train if split == "train" else test)
    x = torch.from_numpy(d.images[pick].astype(np.float32) / 16.0)[:, None]
    return Images(x, torch.from_numpy(d.target[pick].astype(np.int64)), [str(i) for i in range(10)])


def load_cifar(path: Path, split: str, hundred: bool) -> Images:
    """CIFAR-10/100 binary version (data_batch_*.bin / test_batch.bin, train.bin / test.bin)."""
    if hundred:
        files = [path / ("train.bin" if split == "train" else "test.bin")]
        record, label_at = 3074, 1  # coarse label, fine label, 3072 pixels
        meta = path / "fine_label_names.txt"
    else:
        files = [path / f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else [path / "test_batch.bin"]
        record, label_at = 3073, 0
        meta = path / "batches.meta.txt"
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DataMissing(
            f"CIFAR-{'100' if hundred else '10'} binary files not found: {', '.join(missing)}; give the folder holding them as 'path'"
        )
    raw = np.concatenate([np.fromfile(confined(f), dtype=np.uint8).reshape(-1, record) for f in files])
    labels = raw[:, label_at].astype(np.int64)
    pixels = raw[:, record - 3072 :].reshape(-1, 3, 32, 32)
    names = (
        [ln.strip() for ln in meta.read_text().splitlines() if ln.strip()]
        if meta.is_file() and confined(meta)
        else (CIFAR10_CLASSES if not hundred else [str(i) for i in range(100)])
    )
    return Images(_u8(pixels), torch.from_numpy(labels), names)


def load_stl10(path: Path, split: str) -> Images:
    """STL-10 binary version (train_X.bin, train_y.bin, test_*; labels 1..10)."""
    xs, ys = path / f"{split}_X.bin", path / f"{split}_y.bin"
    if not xs.is_file() or not ys.is_file():
        raise DataMissing(f"STL-10 binary files {xs} and {ys} not found; give the folder holding them as 'path'")
    # Stored column-major per image: N×3×96×96 in Fortran order → transpose H and W.
    x = np.fromfile(confined(xs), dtype=np.uint8).reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)
    y = np.fromfile(confined(ys), dtype=np.uint8).astype(np.int64) - 1
    names_file = path / "class_names.txt"
    names = (
        [ln.strip() for ln in names_file.read_text().splitlines() if ln.strip()]
        if names_file.is_file() and confined(names_file)
        else STL10_CLASSES
    )
    return Images(_u8(x), torch.from_numpy(y), names)


def folder_classes(path: Path, split: str) -> tuple[Path, list[str]]:
    """The folder of ``split`` (``path/<split>`` or ``path`` itself) and its class sub-folders."""
    root = path / split if (path / split).is_dir() else path
    if not root.is_dir():
        raise DataMissing(f"image folder {root} not found")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise DataMissing(f"{root} has no class sub-folders")
    return root, classes


def load_folder(path: Path, split: str) -> Images:
    """An image folder per class (``path/<split>/<class>/*.png`` or ``path/<class>/*``)."""
    Image = require("PIL.Image", "train", "image folders")

    root, classes = folder_classes(path, split)
    xs, ys = [], []
    for label, name in enumerate(classes):
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"):
                with Image.open(confined(f)) as im:
                    xs.append(_decoded(im))
                ys.append(label)
    return _stacked(xs, ys, classes, str(root))


def _decoded(im: Any) -> np.ndarray:
    arr = np.asarray(im.convert("RGB" if im.mode not in ("L", "I;16") else "L"))
    return arr if arr.ndim == 3 else arr[..., None]


def _stacked(xs: list[np.ndarray], ys: list[int], classes: list[str], where: str) -> Images:
    if not xs:
        raise DataMissing(f"{where} holds no images (.png, .jpg, .jpeg, .bmp, .gif, .webp)")
    shapes = {a.shape for a in xs}
    if len(shapes) != 1:
        raise ValueError(
            f"images in {where} differ in size {sorted(shapes)[:3]}: add a resize transform or resize them first"
        )
    x = np.stack(xs).transpose(0, 3, 1, 2)
    return Images(_u8(x), torch.tensor(ys, dtype=torch.long), classes)


def load_image_tar(path: Path, split: str) -> Images:
    """A tar of an image folder per class (``<split>/<class>/<file>`` or ``<class>/<file>``),
    as ``partsbin push-data FOLDER`` packs it. Read in place: nothing is extracted."""
    import tarfile

    Image = require("PIL.Image", "train", "image datasets")
    from partsbin.parts.datasets import image_members

    with tarfile.open(path) as tar:
        members = image_members(tar, split)
        classes = sorted({cls for cls, _ in members})
        xs, ys = [], []
        for cls, member in members:
            fh = tar.extractfile(member)
            if fh is None:
                continue
            with Image.open(fh) as im:
                xs.append(_decoded(im))
            ys.append(classes.index(cls))
    return _stacked(xs, ys, classes, f"{path.name} ({split})")


def load_npz(path: Path, split: str) -> Images:
    """``.npz`` with ``x_<split>``/``y_<split>`` (or ``x``/``y``), optional ``classes``.
    Images N×H×W, N×H×W×C or N×C×H×W; uint8 (0–255) or float (0–1). Loaded without pickle.
    Without ``y`` the images are unlabelled (what ``adapt`` needs): every label is -1 and
    there are no classes."""
    if not path.is_file():
        raise DataMissing(f"{path} not found")
    with np.load(confined(path), allow_pickle=False) as d:
        x = d[f"x_{split}"] if f"x_{split}" in d else d["x"]
        y = d[f"y_{split}"] if f"y_{split}" in d else (d["y"] if "y" in d else np.full(len(x), -1))
        if "classes" in d:
            classes = [str(c) for c in d["classes"]]
        else:
            classes = [str(i) for i in range(int(y.max()) + 1)] if len(y) and y.max() >= 0 else []
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    t = _u8(x) if x.dtype == np.uint8 else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return Images(t, torch.from_numpy(y.astype(np.int64)), classes)


def load_source(source: str, split: str, path: str | None = None) -> Images:
    """A source's split, whole. A ``path`` is read as the job's data access allows
    (:mod:`partsbin.parts.data.access`: under a data root for a worker's job)."""
    images = _load(source, split, path)
    images.source_digest = content_digest(images)
    return images


def load_dataset(ref: str, split: str) -> Images:
    """A registered dataset's split, pulled (and verified) through the job's registry."""
    dataset = resolve_dataset(ref)
    # A verified file in the cache, not a path a job named: read as it is.
    with reading_trusted_files():
        if dataset.format == "npz":
            images = load_npz(dataset.path, split)
        elif dataset.format == "image-tar":
            images = load_image_tar(dataset.path, split)
        else:
            raise ValueError(f"dataset {ref}: unknown format {dataset.format!r}")
    images.source_digest = content_digest(images)
    images.dataset_digest = dataset.digest
    return images


def _load(source: str, split: str, path: str | None) -> Images:
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    p = resolve_path(path) if path else None
    if source == "digits":
        return load_digits(split)
    if source == "fashion-mnist":
        if p is not None:
            return load_idx(p, split, FASHION_MNIST_CLASSES)
        # The built-in copy (the Debian package) is the deployment's, not a path a job named.
        with reading_trusted_files():
            return load_idx(FASHION_MNIST_DIR, split, FASHION_MNIST_CLASSES)
    if p is None:
        raise ValueError(f"data source {source!r} needs 'path'")
    if source in ("cifar10", "cifar100"):
        return load_cifar(p, split, hundred=source == "cifar100")
    if source == "stl10":
        return load_stl10(p, split)
    if source == "folder":
        return load_folder(p, split)
    if source == "npz":
        return load_npz(p, split)
    raise ValueError(f"unknown data source {source!r}")
