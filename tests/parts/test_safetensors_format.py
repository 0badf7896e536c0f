import io
import struct

import pytest
import torch

from partsbin.parts.archs import build
from partsbin.parts.safetensors_format import SafetensorsError, check_tensors_match, read_header, save_state_dict
from tests.helpers import raw_safetensors


def _read(data: bytes, **kw):
    return read_header(io.BytesIO(data), len(data), **kw)


def test_reads_a_real_file(tmp_path):
    sd = {"a": torch.zeros(2, 3), "b": torch.arange(4, dtype=torch.int64)}
    save_state_dict(sd, tmp_path / "x.safetensors", {"k": "v"})
    data = (tmp_path / "x.safetensors").read_bytes()
    h = _read(data)
    assert h.metadata == {"k": "v"}
    assert h.tensors["a"].shape == (2, 3) and h.tensors["a"].dtype == "F32"


GOOD = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


@pytest.mark.parametrize(
    "blob,message",
    [
        (b"\x01\x02", "truncated"),
        (struct.pack("<Q", 1000) + b"{}", "runs past the end"),
        (raw_safetensors(GOOD, b"\0" * 4), "outside the 4-byte data section"),
        (
            raw_safetensors({"w": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
            "unknown dtype 'F33'",
        ),
        (
            raw_safetensors(
                {
                    "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "v": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
                },
                b"\0" * 8,
            ),
            "overlap",
        ),
        (
            raw_safetensors(
                {
                    "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "v": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]},
                },
                b"\0" * 16,
            ),
            "gap",
        ),
        (raw_safetensors({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8), "needs 12"),
        (raw_safetensors(GOOD, b"\0" * 12), "cover 8"),
        (raw_safetensors({"__metadata__": {"a": 1}, **GOOD}, b"\0" * 8), "strings"),
        (struct.pack("<Q", 4) + b"\xff\xfe{}" + b"", "UTF-8 JSON"),
        (raw_safetensors(["not", "an", "object"], b""), "JSON object"),  # type: ignore[arg-type]
        (raw_safetensors({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}, b""), "non-negative"),
    ],
)
def test_rejects_malformed_files(blob, message):
    with pytest.raises(SafetensorsError, match=message):
        _read(blob)


def test_header_length_is_bounded():
    with pytest.raises(SafetensorsError, match="exceeds the limit"):
        _read(struct.pack("<Q", 10_000) + b" " * 10_000, max_header_bytes=1024)


def test_tensors_must_match_the_arch(tmp_path):
    head = build("resnet_cifar", depth=8, width=4, num_classes=3).head()
    path = tmp_path / "h.safetensors"
    save_state_dict(head.state_dict(), path)
    data = path.read_bytes()
    check_tensors_match(_read(data), build("resnet_cifar", depth=8, width=4, num_classes=3, device="meta").head())
    with pytest.raises(SafetensorsError, match=r"fc.weight' has shape \[3, 16\] but the card's arch builds \[5, 16\]"):
        check_tensors_match(_read(data), build("resnet_cifar", depth=8, width=4, num_classes=5, device="meta").head())
    with pytest.raises(SafetensorsError, match="missing"):
        check_tensors_match(_read(data), build("resnet_cifar", depth=14, width=4, num_classes=3, device="meta").head())
