"""Datasets as registry objects (``partsbin push-data``): the two file formats partsbin
stores, how a file is checked and described, and how a folder is packed.

- ``npz``: NumPy arrays ``x_train``/``y_train``/``x_test``/``y_test`` (or ``x``/``y``),
  optional ``classes``; read without pickle, object arrays refused.
- ``image-tar``: an uncompressed tar of an image folder per class, ``<split>/<class>/<file>``
  or ``<class>/<file>``; regular files only (no links), names that stay inside the
  archive. Read in place, never extracted.

The registry describes a file from its content (:func:`inspect_dataset`): its classes,
splits, image shape and size are facts it computes, not claims an uploader makes. The
uploader adds what only a person knows: a description, the license, where it came from.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from partsbin.parts.errors import PartsbinError

if TYPE_CHECKING:
    # NumPy only reads .npz headers here; the client's commands import this module for
    # its types, and `partsbin ls` must not pay ~180 ms for it (bench/startup_bench.py).
    import numpy as np

__all__ = [
    "DatasetError",
    "DatasetFacts",
    "DataCard",
    "IMAGE_SUFFIXES",
    "inspect_dataset",
    "pack_folder",
    "image_members",
    "dataset_name",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
SPLITS = ("train", "test")
MAX_MEMBERS = 5_000_000
MAX_CLASSES = 10_000
MAX_LABEL_CHARS = 200


class DatasetError(PartsbinError, ValueError):
    """A file that is not a dataset partsbin stores; the message says what to fix."""


class DatasetFacts(BaseModel):
    """What the registry reads off a dataset file."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["npz", "image-tar"]
    classes: list[str]
    splits: dict[str, int] = Field(description="images per split")
    shape: list[int] | None = Field(description="channels, height, width of every image; None when they differ")


class DataCard(BaseModel):
    """A dataset's card: what a person says of it, and (set by the registry) what it is."""

    model_config = ConfigDict(extra="forbid")

    card_version: Literal[1] = 1
    name: str = Field(description="NAMESPACE/NAME", max_length=129)
    description: str = Field(default="", max_length=10_000)
    license: str | None = Field(default=None, max_length=200)
    source: str | None = Field(default=None, max_length=2000, description="where the data came from")
    tags: list[str] = Field(default_factory=list, max_length=64)
    facts: DatasetFacts | None = Field(default=None, description="set by the registry from the file")


def _npy_header(fh: Any) -> tuple[tuple[int, ...], np.dtype]:
    import numpy as np

    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise DatasetError(f"unsupported .npy format version {version}")
    return tuple(shape), np.dtype(dtype)


def _image_shape(shape: tuple[int, ...]) -> list[int]:
    if len(shape) == 3:
        return [1, shape[1], shape[2]]
    if len(shape) == 4:
        return [shape[3], shape[1], shape[2]] if shape[-1] in (1, 3) and shape[1] not in (1, 3) else list(shape[1:])
    raise DatasetError(f"images must be N×H×W, N×H×W×C or N×C×H×W arrays, not shape {shape}")


def _inspect_npz(path: Path, max_bytes: int) -> DatasetFacts:
    import numpy as np

    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise DatasetError(f"not an .npz (zip) file: {exc}") from None
    with zf:
        infos = {i.filename.removesuffix(".npy"): i for i in zf.infolist()}
        if sum(i.file_size for i in infos.values()) > max_bytes:
            raise DatasetError(f"the arrays hold more than {max_bytes:,} bytes uncompressed")
        headers = {}
        for key in infos:
            with zf.open(infos[key]) as fh:
                headers[key] = _npy_header(fh)
            if headers[key][1].hasobject:
                raise DatasetError(f"array {key!r} holds Python objects (pickle): refused; store numbers and strings")
        splits = [s for s in SPLITS if f"x_{s}" in headers] or (["all"] if "x" in headers else [])
        if not splits:
            raise DatasetError("an .npz dataset holds x_train/y_train/x_test/y_test (or x/y) arrays; it has neither")
        counts, shapes, most = {}, set(), -1
        for s in splits:
            xs, ys = ("x", "y") if s == "all" else (f"x_{s}", f"y_{s}")
            shape, dtype = headers[xs]
            if dtype.kind not in "uif":
                raise DatasetError(f"{xs} must hold numbers (uint8 0-255 or floats 0-1), not {dtype}")
            shapes.add(tuple(_image_shape(shape)))
            counts[s] = int(shape[0])
            if ys in headers:
                with zf.open(infos[ys]) as fh:
                    y = np.lib.format.read_array(fh, allow_pickle=False)
                if y.shape != (shape[0],) or y.dtype.kind not in "iu":
                    raise DatasetError(f"{ys} must be {shape[0]} integer labels, one per image")
                most = max(most, int(y.max()) if len(y) else -1)
        if "classes" in headers:
            with zf.open(infos["classes"]) as fh:
                names = np.lib.format.read_array(fh, allow_pickle=False)
            classes = [str(c) for c in names.reshape(-1)]
            if most >= len(classes):
                raise DatasetError(f"labels go up to {most}, but 'classes' names only {len(classes)}")
        else:
            classes = [str(i) for i in range(most + 1)]
    _check_classes(classes)
    return DatasetFacts(
        format="npz",
        classes=classes,
        splits=counts,
        shape=list(shapes.pop()) if len(shapes) == 1 else None,
    )


def _check_classes(classes: list[str]) -> None:
    if len(classes) > MAX_CLASSES:
        raise DatasetError(f"{len(classes):,} classes: at most {MAX_CLASSES:,}")
    if any(not c or len(c) > MAX_LABEL_CHARS for c in classes):
        raise DatasetError(f"class names are 1 to {MAX_LABEL_CHARS} characters")
    if len(set(classes)) != len(classes):
        raise DatasetError("class names must be unique")


def image_members(tar: tarfile.TarFile, split: str) -> list[tuple[str, tarfile.TarInfo]]:
    """(class, member) of ``split``'s images, in name order. Refuses links, special
    files and names that leave the archive; ``<class>/<file>`` serves every split."""
    by_split: dict[str, list[tuple[str, tarfile.TarInfo]]] = {}
    for n, member in enumerate(tar):
        if n >= MAX_MEMBERS:
            raise DatasetError(f"more than {MAX_MEMBERS:,} entries in the archive")
        name = PurePosixPath(member.name)
        if name.is_absolute() or ".." in name.parts:
            raise DatasetError(f"entry {member.name!r} leaves the archive")
        if member.isdir():
            continue
        if not member.isfile():
            raise DatasetError(f"entry {member.name!r} is a link or a special file: only regular files are stored")
        parts = [p for p in name.parts if p not in ("", ".")]
        if name.suffix.lower() not in IMAGE_SUFFIXES:
            raise DatasetError(f"entry {member.name!r} is not an image ({', '.join(IMAGE_SUFFIXES)})")
        if len(parts) == 3 and parts[0] in SPLITS:
            by_split.setdefault(parts[0], []).append((parts[1], member))
        elif len(parts) == 2:
            by_split.setdefault("all", []).append((parts[0], member))
        else:
            raise DatasetError(f"entry {member.name!r}: images go in <class>/<file> or <train|test>/<class>/<file>")
    if "all" in by_split and len(by_split) > 1:
        raise DatasetError("mix of <class>/<file> and <split>/<class>/<file> entries: use one layout")
    found = by_split.get(split) or by_split.get("all")
    if found is None:
        raise DatasetError(f"the archive has no {split!r} images (it has: {', '.join(sorted(by_split)) or 'none'})")
    return sorted(found, key=lambda cm: cm[1].name)


def _inspect_tar(path: Path, max_bytes: int) -> DatasetFacts:
    from partsbin.parts.extras import require

    Image = require("PIL.Image", "train", "image datasets")
    try:
        tar = tarfile.open(path, mode="r:")  # uncompressed only: sizes are what they say
    except tarfile.TarError as exc:
        raise DatasetError(f"not an uncompressed tar archive: {exc}") from None
    with tar:
        first = image_members(tar, "train")  # validates every entry
        names = {m.name for _, m in first}
        splits_found = {"train": first}
        try:
            test = image_members(tar, "test")
            if {m.name for _, m in test} != names:
                splits_found["test"] = test
        except DatasetError:
            pass
        classes = sorted({c for members in splits_found.values() for c, _ in members})
        _check_classes(classes)
        shapes: set[tuple[int, ...]] = set()
        for members in splits_found.values():
            seen: dict[str, int] = {}
            for cls, member in members:
                if seen.get(cls, 0) >= 8:  # headers of a few images per class; decoding all is the loader's
                    continue
                seen[cls] = seen.get(cls, 0) + 1
                fh = tar.extractfile(member)
                assert fh is not None
                try:
                    with Image.open(io.BytesIO(fh.read(min(member.size, max_bytes)))) as im:
                        channels = 1 if im.mode in ("L", "I;16", "1") else 3
                        shapes.add((channels, im.height, im.width))
                except Exception as exc:  # noqa: BLE001 — Pillow raises many types for bad images
                    raise DatasetError(f"entry {member.name!r} is not an image Pillow can read: {exc}") from None
        same = next(iter(shapes)) if len(shapes) == 1 else None
        counts = {s: len(m) for s, m in splits_found.items()} if "test" in splits_found else {"all": len(first)}
    return DatasetFacts(format="image-tar", classes=classes, splits=counts, shape=list(same) if same else None)


def inspect_dataset(path: Path, *, max_bytes: int = 64 * 1024**3) -> DatasetFacts:
    """Check ``path`` as a dataset file and describe it. Raises :class:`DatasetError`."""
    with open(path, "rb") as fh:
        magic = fh.read(265)
    if magic[:4] == b"PK\x03\x04":
        return _inspect_npz(path, max_bytes)
    if len(magic) >= 262 and magic[257:262] == b"ustar":
        return _inspect_tar(path, max_bytes)
    raise DatasetError(
        "not a dataset file: give an .npz of arrays, an uncompressed tar of <class>/<image> folders, or a folder "
        "(`partsbin push-data FOLDER` packs it)"
    )


def pack_folder(folder: Path, out: Path) -> int:
    """Pack an image folder per class into ``out`` as the registry stores it: sorted,
    with no owner, time or mode that differs between machines, so the same images give
    the same digest. Returns the number of images."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}) in <class>/ folders")
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for f in files:
            info = tarfile.TarInfo(f.relative_to(folder).as_posix())
            info.size = f.stat().st_size
            info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, 0, "", ""
            with f.open("rb") as fh:
                tar.addfile(info, fh)
    return len(files)


def dataset_name(card: DataCard) -> tuple[str, str]:
    """(namespace, name) of a card's ``name``, checked by the naming rules."""
    from partsbin.parts.names import validate_name

    validate_name(card.name)
    namespace, name = card.name.split("/", 1)
    return namespace, name
