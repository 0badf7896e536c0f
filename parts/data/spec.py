"""What a job says about its data: a source (built in, or a file under a data root) or a
registered dataset, the selections and the domain shift applied to it.

A job submitted to a registry may come from any publish token, so a ``path`` is checked
where the spec is validated: with the validation context's ``data_roots`` (what the
registry passes, from ``PARTSBIN_DATA_ROOTS``) a path must be relative, without ``..``,
and some root must be declared; the worker checks it again after resolving symlinks
(:mod:`partsbin.parts.data.access`). Without that context (``--local`` runs, a user's own
scripts) a path is the user's own.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from partsbin.parts.names import InvalidName, parse_ref

__all__ = [
    "Transform",
    "Stream",
    "DataSpec",
    "SOURCES",
    "BUILT_IN_SOURCES",
    "check_relative_path",
    "MAX_IMAGE_SIZE",
    "RECORDED_TEST_EXTRAS",
]

#: Sources that need no path: scikit-learn's digits, and Fashion-MNIST from its Debian package.
BUILT_IN_SOURCES = ("digits", "fashion-mnist")
SOURCES = (*BUILT_IN_SOURCES, "cifar10", "cifar100", "stl10", "folder", "npz")
#: The largest side a resize may ask for (the registry's own limit may be lower).
MAX_IMAGE_SIZE = 4096


#: What a card records about its test set beside the data spec itself
#: (``provenance.dataset.test``): how many images, and their digests.
RECORDED_TEST_EXTRAS = frozenset({"test_limit", "source_digest", "data_digest"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Transform(_Model):
    """One step of a domain shift or input preparation, applied in order.

    Shifts are declared here rather than baked into a file, so that a card's provenance
    says exactly what the domain was: ``resize`` (down, and optionally back up),
    ``invert``, ``contrast`` (scale each image about its mean), ``brightness`` (add a
    constant), ``noise`` (additive Gaussian, seeded), ``blur`` (Gaussian), and the input
    preparations ``grey_to_rgb`` and ``normalize``. Images stay in [0, 1] after every
    shift (clamped), as the loaders deliver them.
    """

    op: Literal["resize", "invert", "contrast", "brightness", "noise", "blur", "grey_to_rgb", "normalize"]
    size: int | None = Field(default=None, ge=1, le=MAX_IMAGE_SIZE, description="resize: size to resample to")
    back_to: int | None = Field(
        default=None, ge=1, le=MAX_IMAGE_SIZE, description="resize: then resample back to this size (28→14→28)"
    )
    factor: float | None = Field(default=None, gt=0, le=100, description="contrast: 0.5 halves it, 2 doubles it")
    delta: float | None = Field(default=None, ge=-1, le=1, description="brightness: added to every pixel")
    sigma: float | None = Field(
        default=None, gt=0, le=100, description="noise: its standard deviation; blur: the kernel's, in pixels"
    )
    seed: int = Field(default=0, description="noise: the seed of the noise generator")
    mean: list[float] | None = Field(default=None, max_length=64)
    std: list[float] | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _args(self) -> Transform:
        needs = {"resize": "size", "contrast": "factor", "brightness": "delta", "noise": "sigma", "blur": "sigma"}
        field = needs.get(self.op)
        if field is not None and getattr(self, field) is None:
            raise ValueError(f"{self.op} needs '{field}'")
        if self.op == "normalize" and (self.mean is None or self.std is None):
            raise ValueError("normalize needs 'mean' and 'std'")
        return self


class Stream(_Model):
    """Read the images lazily, file by file, through a ``torch.utils.data.DataLoader``
    with worker processes, instead of loading the whole split into memory: for image
    folders (``source: "folder"``) and registered image-tar datasets, at any size.

    Every image is decoded with Pillow (RGB, or greyscale with ``channels: 1``) and
    resized to ``size``×``size``. On the training split ``crop: "random-resized"`` takes
    a random crop of ``scale`` of the area and an aspect ratio in ``ratio`` first, and
    ``flip`` mirrors half of the images; the test split is only resized. The random
    draws are seeded by the job's seed per image, so a job is reproducible whatever
    ``workers`` is."""

    size: int = Field(ge=1, le=MAX_IMAGE_SIZE, description="every image is resized to size×size pixels")
    channels: Literal[1, 3] = Field(default=3, description="3: RGB; 1: greyscale")
    crop: Literal["none", "random-resized"] = Field(
        default="none", description="training split: a random crop of 'scale' of the area, then the resize"
    )
    scale: tuple[float, float] = Field(
        default=(0.35, 1.0), description="random-resized crop: the smallest and largest fraction of the area"
    )
    ratio: tuple[float, float] = Field(
        default=(3 / 4, 4 / 3), description="random-resized crop: the narrowest and widest aspect ratio"
    )
    flip: bool = Field(default=False, description="training split: mirror each image with probability 1/2")
    workers: int = Field(
        default=2, ge=0, le=32, description="DataLoader worker processes decoding images; 0: in the job's process"
    )

    @model_validator(mode="after")
    def _ranges(self) -> Stream:
        low, high = self.scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"scale {list(self.scale)} must satisfy 0 < smallest <= largest <= 1")
        narrow, wide = self.ratio
        if not 0.05 <= narrow <= wide <= 20:
            raise ValueError(f"ratio {list(self.ratio)} must satisfy 0.05 <= narrowest <= widest <= 20")
        return self


def check_relative_path(path: str, roots: list[str] | tuple[str, ...]) -> str:
    """``path`` as a job from outside may name it: relative to a data root, never leaving it.

    Purely lexical (the registry and the workers need not share a file system); the
    worker resolves symlinks and checks again. The message never depends on what exists."""
    where = f"the data roots ({', '.join(roots)})" if roots else None
    if not roots:
        raise ValueError(
            "this registry declares no data roots (PARTSBIN_DATA_ROOTS), so a job cannot name a path: use a "
            "built-in source (digits, fashion-mnist) or a registered dataset ({'dataset': 'ns/name@1'}, "
            "`partsbin push-data`)"
        )
    p = PurePosixPath(path.replace("\\", "/"))
    if not path or "\x00" in path or p.is_absolute() or path.startswith("~") or (len(path) > 1 and path[1] == ":"):
        raise ValueError(f"path {path!r} must be relative to one of {where}")
    if ".." in p.parts:
        raise ValueError(f"path {path!r} may not contain '..': it is read relative to one of {where}")
    return str(p)


class DataSpec(_Model):
    """Where a task's images come from and what is done to them: a ``source`` (and for
    the sources that are files, a ``path``), or a registered ``dataset``."""

    source: Literal["digits", "fashion-mnist", "cifar10", "cifar100", "stl10", "folder", "npz"] | None = Field(
        default=None, description="a built-in source, or the format of the file or folder at 'path'"
    )
    path: str | None = Field(
        default=None,
        max_length=1024,
        description="file or folder, relative to a data root for submitted jobs; default: the source's own location",
    )
    dataset: str | None = Field(
        default=None,
        max_length=300,
        description="a registered dataset instead of a source: 'ns/name', 'ns/name@3' or 'sha256:...'",
    )
    classes: list[str] | None = Field(
        default=None, max_length=10_000, description="class subset by label name, in this order (labels are remapped)"
    )
    indices: Literal["even", "odd"] | None = Field(default=None, description="keep even- or odd-indexed examples")
    transforms: list[Transform] = Field(default_factory=list, max_length=64)
    limit: int | None = Field(default=None, ge=1, description="keep the first N examples (after the selections)")
    stream: Stream | None = Field(
        default=None, description="read the images lazily in worker processes, at any size (image folders, image tars)"
    )

    @field_validator("path")
    @classmethod
    def _confined(cls, v: str | None, info: ValidationInfo) -> str | None:
        context: Any = info.context
        if v is not None and isinstance(context, dict) and context.get("data_roots") is not None:
            return check_relative_path(v, context["data_roots"])
        return v

    @field_validator("dataset")
    @classmethod
    def _dataset_ref(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_ref(v)
            except InvalidName as exc:
                raise ValueError(f"dataset: {exc}") from None
        return v

    @model_validator(mode="after")
    def _one_origin(self) -> DataSpec:
        if (self.source is None) == (self.dataset is None):
            raise ValueError(
                "give either 'source' (a built-in source or a file format) or 'dataset' (a registered one)"
            )
        if self.dataset is not None and self.path is not None:
            raise ValueError("a registered dataset is pulled from the registry: leave 'path' out")
        if self.stream is not None:
            if self.source is not None and self.source != "folder":
                raise ValueError(
                    f"stream reads image folders (source 'folder') and registered image-tar datasets, not {self.source!r}: "
                    "leave 'stream' out"
                )
            if any(t.op == "noise" for t in self.transforms):
                raise ValueError("the noise transform is drawn for a whole set at once: it cannot be streamed")
        return self

    @property
    def label(self) -> str:
        """What the data is called in a card or an evaluation: the source, or the dataset's ref."""
        return self.source if self.source is not None else f"dataset:{self.dataset}"

    def largest_side(self) -> int | None:
        """The largest image side a resize of this spec asks for (what bounds its memory)."""
        sizes = [s for t in self.transforms for s in (t.size, t.back_to) if s is not None]
        if self.stream is not None:
            sizes.append(self.stream.size)
        return max(sizes) if sizes else None
