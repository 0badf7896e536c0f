"""Image folders and image tars read lazily (a data spec's ``stream``): a
``torch.utils.data.Dataset`` that holds only the file list and the labels and decodes
each image with Pillow when it is asked for, behind a ``DataLoader`` with worker
processes. Memory stays bounded whatever the size of the data set: no decoded split, no
whole-set tensor, not even for its digest or its class counts.

A streamed split is identified by its *manifest digest* (:func:`manifest_digest`):
sha256 over the class names and, for every image in name order, its path relative to
the split, its size and the sha256 of its bytes. Reading every byte once costs about a
second per 500 MB; it changes when any image changes, is renamed, moved to another
class, added or removed, and is the same for a copy of the folder anywhere (or the same
images in a registered tar).

Random draws (random-resized crop, flip) are made per image from a seed the sampler
hands out with its index, so the images a job trains on do not depend on how many
workers decode them or in which order they finish.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from partsbin.parts.data.access import confined, reading_trusted_files, real_roots, resolve_dataset, resolve_path
from partsbin.parts.data.spec import DataSpec, Stream, Transform
from partsbin.parts.errors import PartsbinError
from partsbin.parts.extras import require

__all__ = [
    "UnreadableImage",
    "NeedsImagesInMemory",
    "ImageFiles",
    "StreamedImages",
    "StreamBatches",
    "manifest_digest",
    "load_streamed",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_SEED_RANGE = 2**62


class UnreadableImage(PartsbinError, ValueError):
    """An image file Pillow cannot decode; the message names the file."""


class NeedsImagesInMemory(PartsbinError, ValueError):
    """A job kind that needs the whole split as one tensor was given streamed data."""


@dataclass(frozen=True)
class Decoding:
    """How one file becomes a C×size×size float tensor."""

    size: int
    channels: int
    crop: str
    scale: tuple[float, float]
    ratio: tuple[float, float]
    flip: bool
    #: Crop and flip are drawn only for the training split.
    augment: bool
    transforms: tuple[Transform, ...] = ()


class ImageFiles(Dataset[tuple[torch.Tensor, int]]):
    """The images of one split, as names and where their bytes are; nothing decoded.

    ``dataset[i]`` is image ``i`` without random draws; ``dataset[(i, seed)]`` draws its
    crop and flip from ``seed`` (what the training sampler hands out). The arrays are
    numpy (fixed-width bytes, int64), so forked workers share them instead of touching a
    Python object per file."""

    def __init__(
        self,
        names: np.ndarray,
        labels: torch.Tensor,
        decoding: Decoding,
        *,
        paths: np.ndarray | None = None,
        roots: tuple[str, ...] | None = None,
        tar: str | None = None,
        offsets: np.ndarray | None = None,
        sizes: np.ndarray | None = None,
    ) -> None:
        self.names = names
        self.labels = labels
        self.decoding = decoding
        self.paths = paths
        self.roots = roots
        self.tar = tar
        self.offsets = offsets
        self.sizes = sizes
        self._fd: int | None = None
        self._fd_pid: int | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getstate__(self) -> dict[str, Any]:
        # A worker started by spawn or forkserver opens its own descriptor.
        return {**self.__dict__, "_fd": None, "_fd_pid": None}

    def subset(self, index: torch.Tensor) -> ImageFiles:
        i = index.numpy()
        return ImageFiles(
            self.names[i],
            self.labels[index],
            self.decoding,
            paths=self.paths[i] if self.paths is not None else None,
            roots=self.roots,
            tar=self.tar,
            offsets=self.offsets[i] if self.offsets is not None else None,
            sizes=self.sizes[i] if self.sizes is not None else None,
        )

    def relabelled(self, labels: torch.Tensor) -> ImageFiles:
        out = self.subset(torch.arange(len(self)))
        out.labels = labels
        return out

    def with_decoding(self, decoding: Decoding) -> ImageFiles:
        out = self.subset(torch.arange(len(self)))
        out.decoding = decoding
        return out

    def name(self, i: int) -> str:
        return bytes(self.names[i]).decode("utf-8", "surrogateescape")

    def read(self, i: int) -> bytes:
        """The bytes of image ``i``, read where the roots allow (checked again here: a
        worker process reads what the listing resolved, never more)."""
        if self.tar is not None:
            assert self.offsets is not None and self.sizes is not None
            pid = os.getpid()
            if self._fd is None or self._fd_pid != pid:
                self._fd, self._fd_pid = os.open(self.tar, os.O_RDONLY), pid
            # pread: no shared file offset between the processes that read this tar.
            return os.pread(self._fd, int(self.sizes[i]), int(self.offsets[i]))
        assert self.paths is not None
        path = bytes(self.paths[i]).decode("utf-8", "surrogateescape")
        if self.roots is not None:
            real = os.path.realpath(path)
            if not any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in self.roots):
                raise UnreadableImage(f"{self.name(i)} in the data folder resolves outside the data roots: refused")
            path = real
        with open(path, "rb") as fh:
            return fh.read()

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, seed = key if isinstance(key, tuple) else (key, None)
        return decode(self.read(i), self.name(i), self.decoding, seed), int(self.labels[i])


def decode(data: bytes, name: str, d: Decoding, seed: int | None) -> torch.Tensor:
    """One image: decoded, cropped (training, seeded), resized, flipped, in [0, 1]; then
    the spec's transforms."""
    Image = require("PIL.Image", "train", "image folders")
    rng = random.Random(seed) if seed is not None and d.augment else None
    try:
        with Image.open(io.BytesIO(data)) as opened:
            im = opened.convert("L" if d.channels == 1 else "RGB")
        box = _random_resized_box(im.width, im.height, d, rng) if rng is not None and d.crop != "none" else None
        if box is not None or im.size != (d.size, d.size):
            im = im.resize((d.size, d.size), Image.Resampling.BILINEAR, box=box)
        if rng is not None and d.flip and rng.random() < 0.5:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        array = np.array(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"{name}: not a readable image ({exc}); replace or remove the file") from None
    if array.ndim == 2:
        array = array[..., None]
    x = torch.from_numpy(array).permute(2, 0, 1).float().div_(255.0)
    if d.transforms:
        from partsbin.parts.data.transforms import apply_one

        batch = x[None]
        for t in d.transforms:
            batch = apply_one(batch, t)
        x = batch[0].contiguous()
    return x


def _random_resized_box(width: int, height: int, d: Decoding, rng: random.Random) -> tuple[float, float, float, float]:
    """torchvision's ``RandomResizedCrop.get_params``: ten tries at an area in ``scale``
    and a log-uniform aspect ratio in ``ratio``, else a centre crop of the clamped ratio."""
    area = width * height
    log_low, log_high = math.log(d.ratio[0]), math.log(d.ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*d.scale)
        aspect = math.exp(rng.uniform(log_low, log_high))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return (left, top, left + w, top + h)
    aspect = width / height
    if aspect < d.ratio[0]:
        w, h = width, round(width / d.ratio[0])
    elif aspect > d.ratio[1]:
        w, h = round(height * d.ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return (left, top, left + w, top + h)


def manifest_digest(files: ImageFiles, classes: list[str]) -> str:
    """``sha256:`` of the class names and every image's relative path, size and content
    hash, in name order: read once, one file at a time."""
    h = hashlib.sha256()
    h.update(json.dumps(classes).encode())
    for i in range(len(files)):
        data = files.read(i)
        h.update(b"%s\0%d\0%s\n" % (bytes(files.names[i]), len(data), hashlib.sha256(data).hexdigest().encode()))
    return f"sha256:{h.hexdigest()}"


class TrainingBatches(Sampler[list[tuple[int, int]]]):
    """Endless shuffled batches of (index, seed): one permutation per epoch and the last
    partial batch dropped, like the in-memory ``EpochBatches``."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n == 0:
            raise ValueError("no training examples")
        self.n, self.batch_size, self.seed = n, min(batch_size, n), seed

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        gen = torch.Generator().manual_seed(self.seed)
        while True:
            order = torch.randperm(self.n, generator=gen).tolist()
            draws = torch.randint(0, _SEED_RANGE, (self.n,), generator=gen).tolist()
            for start in range(0, self.n - self.batch_size + 1, self.batch_size):
                yield list(
                    zip(order[start : start + self.batch_size], draws[start : start + self.batch_size], strict=True)
                )


def _seed_worker(worker_id: int) -> None:
    # Whatever a transform might draw from the global generators is seeded too.
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def _unwrapped(exc: UnreadableImage) -> UnreadableImage:
    """A worker's error as its own message (the DataLoader wraps it in the worker's traceback)."""
    text = str(exc)
    marker = "UnreadableImage: "
    return UnreadableImage(text.rsplit(marker, 1)[-1].strip() if marker in text else text)


class StreamBatches:
    """Batches from a DataLoader over :class:`ImageFiles`: an iterator (endless for
    training) that says which file failed, and :meth:`close` to stop its workers."""

    def __init__(self, loader: DataLoader[Any]) -> None:
        self.loader = loader
        self._it: Iterator[Any] | None = iter(loader)

    def __iter__(self) -> StreamBatches:
        return self

    def __next__(self) -> tuple[torch.Tensor, ...]:
        if self._it is None:
            raise StopIteration
        try:
            x, y = next(self._it)
        except UnreadableImage as exc:
            self.close()
            raise _unwrapped(exc) from None
        except StopIteration:
            self.close()
            raise
        return x, y

    def close(self) -> None:
        it, self._it = self._it, None
        shutdown: Callable[[], None] | None = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()

    def __del__(self) -> None:
        self.close()


@dataclass
class StreamedImages:
    """A split read lazily: what :class:`~partsbin.parts.data.sources.Images` says of its
    images (labels, classes, digests, recipe), with the pixels decoded batch by batch."""

    files: ImageFiles
    classes: list[str]
    workers: int
    source_digest: str | None = None
    dataset_digest: str | None = None
    recipe: dict[str, Any] | None = None
    #: What the source is called in an error (a folder, a dataset's split).
    where: str = field(default="", compare=False)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def y(self) -> torch.Tensor:
        return self.files.labels

    @property
    def x(self) -> torch.Tensor:
        raise NeedsImagesInMemory(
            f"this job needs the whole split of {self.where or 'the data'} in memory as one tensor, and its data spec "
            "says 'stream': streamed data serves the train job and evaluations (bench, evaluate); leave 'stream' "
            "out (and resize with a transform) for this kind"
        )

    @property
    def channels(self) -> int:
        d = self.files.decoding
        return 3 if any(t.op == "grey_to_rgb" for t in d.transforms) else d.channels

    @property
    def side(self) -> int:
        side = self.files.decoding.size
        for t in self.files.decoding.transforms:
            if t.op == "resize":
                side = t.back_to or t.size or side
        return side

    def subset(self, index: torch.Tensor | np.ndarray | range) -> StreamedImages:
        prefix = isinstance(index, range) and index.start == 0 and index.step == 1
        index = torch.as_tensor(index, dtype=torch.long)
        return replace(self, files=self.files.subset(index), recipe=self.recipe if prefix else None)

    def select_classes(self, keep: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> StreamedImages:
        chosen = self.files.subset(torch.nonzero(keep).flatten())
        return replace(self, files=chosen.relabelled(labels), classes=classes, recipe=None)

    @property
    def data_digest(self) -> str | None:
        if self.recipe is None or self.source_digest is None:
            return None
        text = json.dumps({**self.recipe, "source": self.source_digest, "n": len(self)}, sort_keys=True)
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    def _loader(self, batch_sampler: Any, *, pin: bool, seed: int) -> DataLoader[Any]:
        workers = self.workers
        return DataLoader(
            self.files,
            batch_sampler=batch_sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            prefetch_factor=2 if workers > 0 else None,
            pin_memory=pin,
            worker_init_fn=_seed_worker if workers > 0 else None,
            generator=torch.Generator().manual_seed(seed),
        )

    def training_batches(self, batch_size: int, seed: int, *, pin: bool = False) -> StreamBatches:
        """Endless shuffled (x, y) batches, augmented as the spec says, seeded by ``seed``."""
        return StreamBatches(self._loader(TrainingBatches(len(self), batch_size, seed), pin=pin, seed=seed))

    def image_batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The images in order, ``batch_size`` at a time, without random draws."""
        if not len(self):
            return
        order = torch.arange(len(self)).split(batch_size)
        for x, _ in StreamBatches(self._loader([b.tolist() for b in order], pin=False, seed=0)):
            yield x


# -- loading -----------------------------------------------------------------------------------
def _decoding(stream: Stream, transforms: list[Transform], split: str) -> Decoding:
    return Decoding(
        size=stream.size,
        channels=stream.channels,
        crop=stream.crop,
        scale=stream.scale,
        ratio=stream.ratio,
        flip=stream.flip,
        augment=split == "train",
        transforms=tuple(transforms),
    )


def _folder_files(path: Path, split: str, decoding: Decoding) -> tuple[ImageFiles, list[str], str]:
    from partsbin.parts.data.sources import DataMissing, folder_classes

    root, classes = folder_classes(path, split)
    names: list[bytes] = []
    paths: list[bytes] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        for f in sorted((root / cls).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                real = confined(f)
                names.append(os.fsencode(f"{cls}/{f.name}"))
                paths.append(os.fsencode(real))
                labels.append(label)
    if not names:
        raise DataMissing(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    roots = real_roots()
    files = ImageFiles(
        np.array(names, dtype=bytes),
        torch.tensor(labels, dtype=torch.long),
        decoding,
        paths=np.array(paths, dtype=bytes),
        roots=tuple(str(r) for r in roots) if roots is not None else None,
    )
    return files, classes, str(root)


def _tar_files(path: Path, split: str, decoding: Decoding, where: str) -> tuple[ImageFiles, list[str], str]:
    import tarfile

    from partsbin.parts.datasets import image_members

    # A registered image-tar is uncompressed (the registry refuses anything else), so a
    # member's bytes lie at a fixed offset: each worker reads them with pread.
    with tarfile.open(path, "r:") as tar:
        members = image_members(tar, split)
    classes = sorted({cls for cls, _ in members})
    index = {c: i for i, c in enumerate(classes)}
    files = ImageFiles(
        # Named as in a folder (``<class>/<file>``): the same images packed into a
        # registered tar have the same manifest digest as the folder they came from.
        np.array([f"{cls}/{PurePosixPath(m.name).name}".encode() for cls, m in members], dtype=bytes),
        torch.tensor([index[cls] for cls, _ in members], dtype=torch.long),
        decoding,
        tar=str(path),
        offsets=np.array([m.offset_data for _, m in members], dtype=np.int64),
        sizes=np.array([m.size for _, m in members], dtype=np.int64),
    )
    return files, classes, where


def load_streamed(spec: DataSpec, split: str) -> StreamedImages:
    """``spec``'s split as a stream: the file list, its manifest digest and labels, with
    the spec's selections applied to the list (see :func:`partsbin.parts.data.transforms.prepare`)."""
    from partsbin.parts.data.transforms import select

    assert spec.stream is not None
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    decoding = _decoding(spec.stream, spec.transforms, split)
    dataset_digest = None
    if spec.dataset is not None:
        dataset = resolve_dataset(spec.dataset)
        if dataset.format != "image-tar":
            raise ValueError(
                f"dataset {spec.dataset} is {dataset.format!r}: only image-tar datasets stream (an npz file is "
                "compressed arrays that numpy reads whole); leave 'stream' out"
            )
        # A verified file in the cache, not a path a job named: read as it is.
        with reading_trusted_files():
            files, classes, where = _tar_files(dataset.path, split, decoding, f"{spec.dataset} ({split})")
            digest = manifest_digest(files, classes)
        dataset_digest = dataset.digest
    else:
        if spec.path is None:
            raise ValueError("a streamed image folder needs 'path'")
        files, classes, where = _folder_files(resolve_path(spec.path), split, decoding)
        digest = manifest_digest(files, classes)
    images = StreamedImages(files, classes, spec.stream.workers, digest, dataset_digest, where=where)
    out = select(images, spec)
    out.recipe = {
        "classes": spec.classes,
        "indices": spec.indices,
        "transforms": [t.model_dump(mode="json") for t in spec.transforms],
        "stream": spec.stream.model_dump(mode="json", exclude={"workers"}),
    }
    return out
