"""Reading and checking ``.safetensors`` files without trusting them.

The registry checks every upload here before anything is stored: a bounded header,
known dtypes, offsets inside the file with neither overlaps nor gaps (the same rules
the reference library applies when it loads), and tensors that equal, name for name
and shape for shape, the state dict of the module the card's ``arch`` builds.
Nothing here ever unpickles.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    import torch
    from torch import nn

from partsbin.parts import jsonlimits

__all__ = [
    "DTYPE_SIZES",
    "DEFAULT_MAX_HEADER_BYTES",
    "SafetensorsError",
    "TensorInfo",
    "Header",
    "read_header",
    "foreign_format",
    "check_tensors_match",
    "save_state_dict",
    "load_state_dict",
]

DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
_FLOAT_DTYPES = {"F8_E5M2", "F8_E4M3", "F16", "BF16", "F32", "F64"}
# Component headers are a few KiB; the reference library allows 100 MB. A smaller bound
# keeps a hostile header from costing the registry memory before it is rejected.
DEFAULT_MAX_HEADER_BYTES = 16 * 1024 * 1024


class SafetensorsError(ValueError):
    """The file is not a well-formed safetensors file, or does not match its card."""


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class Header:
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_offset: int


# Formats people upload by mistake, by their first bytes. torch.save writes a zip archive
# (since PyTorch 1.6) or, with _use_new_zipfile_serialization=False, a raw pickle; both
# would otherwise be refused with "header length 5787125521844334... exceeds the limit".
_SAVE_WITH_SAFETENSORS = (
    "save it with safetensors instead: safetensors.torch.save_file(module.state_dict(), path), "
    "or let partsbin write it: Registry.push(module, card)"
)
_MAGIC = (
    (b"PK\x03\x04", "this is a zip archive, as torch.save writes (a PyTorch pickle); " + _SAVE_WITH_SAFETENSORS),
    (
        b"\x80",
        "this is a Python pickle (torch.save or pickle.dump); partsbin never unpickles; " + _SAVE_WITH_SAFETENSORS,
    ),
    (b"\x93NUMPY", "this is a NumPy .npy array, not a safetensors file; " + _SAVE_WITH_SAFETENSORS),
    (b"\x89HDF", "this is an HDF5 file (Keras .h5?), not a safetensors file"),
)


def foreign_format(first_bytes: bytes) -> str | None:
    """What a file that is not safetensors is, by its first 9 bytes, or None.

    A safetensors file starts with its header length and then ``{``: a header length can
    begin with any byte (0x80 included), so only a file without that ``{`` is foreign."""
    if first_bytes[8:9] == b"{":
        return None
    for magic, what in _MAGIC:
        if first_bytes.startswith(magic):
            return what
    return None


def read_header(fp: BinaryIO, file_size: int, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> Header:
    fp.seek(0)
    first = fp.read(9)
    foreign = foreign_format(first)
    if foreign is not None:
        raise SafetensorsError(foreign)
    if file_size < 8:
        raise SafetensorsError(
            f"file is truncated: {file_size} bytes, a safetensors file starts with an 8-byte header length"
        )
    (n,) = struct.unpack("<Q", first[:8])
    fp.seek(8)
    if n > max_header_bytes:
        raise SafetensorsError(f"header length {n} exceeds the limit of {max_header_bytes} bytes")
    if 8 + n > file_size:
        raise SafetensorsError(f"header length {n} runs past the end of the {file_size}-byte file (truncated upload?)")
    raw = fp.read(n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SafetensorsError(f"header is not valid UTF-8 JSON: {exc}") from None
    try:
        # Duplicate keys refused: json.loads would keep the last tensor of a name silently.
        header = jsonlimits.loads(text)
    except jsonlimits.JsonLimitError as exc:
        raise SafetensorsError(f"header is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise SafetensorsError("header must be a JSON object mapping tensor names to their dtype, shape and offsets")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise SafetensorsError("__metadata__ must map strings to strings")

    data_size = file_size - 8 - n
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise SafetensorsError(f"tensor {name!r}: expected exactly the keys dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPE_SIZES:
            raise SafetensorsError(f"tensor {name!r}: unknown dtype {dtype!r}; known: {', '.join(sorted(DTYPE_SIZES))}")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise SafetensorsError(f"tensor {name!r}: shape must be a list of non-negative integers")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise SafetensorsError(
                f"tensor {name!r}: data_offsets must be two non-negative integers [begin, end] with begin <= end"
            )
        start, end = offsets
        if end > data_size:
            raise SafetensorsError(
                f"tensor {name!r}: data_offsets [{start}, {end}] lie outside the {data_size}-byte data section (truncated file?)"
            )
        expected = math.prod(shape) * DTYPE_SIZES[dtype]
        if end - start != expected:
            raise SafetensorsError(
                f"tensor {name!r}: {end - start} bytes for shape {shape} of {dtype}, which needs {expected}"
            )
        tensors[name] = TensorInfo(dtype, tuple(shape), start, end)

    position = 0
    for name, info in sorted(tensors.items(), key=lambda kv: (kv[1].start, kv[1].end)):
        if info.start < position:
            raise SafetensorsError(
                f"tensor {name!r}: data_offsets [{info.start}, {info.end}] overlap the previous tensor"
            )
        if info.start > position:
            raise SafetensorsError(f"tensor {name!r}: gap of {info.start - position} bytes before its data")
        position = info.end
    if position != data_size:
        raise SafetensorsError(
            f"data section holds {data_size} bytes but the tensors cover {position} (truncated or padded file)"
        )
    return Header(tensors=tensors, metadata=dict(metadata), data_offset=8 + n)


def check_tensors_match(
    header: Header, expected: nn.Module | Mapping[str, tuple[tuple[int, ...], torch.dtype]]
) -> None:
    """Names and shapes equal the module's state dict (or a precomputed map of name to
    shape and dtype, as ``partsbin.parts.archs.part_layout`` gives); floats stay floats, integers integers."""
    if not isinstance(expected, Mapping):  # an nn.Module
        expected = {k: (tuple(v.shape), v.dtype) for k, v in expected.state_dict().items()}
    missing = sorted(set(expected) - set(header.tensors))
    extra = sorted(set(header.tensors) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if extra:
            parts.append(f"unexpected {_few(extra)}")
        raise SafetensorsError("tensors do not match the card's arch: " + "; ".join(parts))
    for name, (shape, dtype) in expected.items():
        info = header.tensors[name]
        if info.shape != shape:
            raise SafetensorsError(
                f"tensor {name!r} has shape {list(info.shape)} but the card's arch builds {list(shape)}"
            )
        if dtype.is_floating_point != (info.dtype in _FLOAT_DTYPES):
            raise SafetensorsError(f"tensor {name!r} has dtype {info.dtype} but the card's arch holds {dtype}")


def _few(names: list[str], n: int = 5) -> str:
    shown = ", ".join(repr(x) for x in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def save_state_dict(
    state: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str] | None = None
) -> None:
    from safetensors.torch import save_file

    # safetensors refuses shared or non-contiguous storage; a state dict of a split
    # network can hold both (views, tied weights), so write independent copies.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    save_file(tensors, str(path), metadata=dict(metadata or {}))


def load_state_dict(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path), device=str(device))
