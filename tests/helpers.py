"""Small builders of real components for the tests."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch

from partsbin.parts.archs import build
from partsbin.parts.card import CARD_METADATA_KEY, Card
from partsbin.parts.describe import card_for
from partsbin.parts.safetensors_format import save_state_dict

CFG: dict[str, Any] = {"depth": 8, "width": 4, "in_chans": 1, "num_classes": 3}
LABELS = ["a", "b", "c"]


def network(seed: int = 0, **cfg: Any):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    net = build("resnet_cifar", **{**CFG, **cfg})
    with torch.no_grad():
        net.train()
        net(torch.randn(8, CFG["in_chans"], 16, 16))  # non-trivial BatchNorm running buffers
    return net.eval()


def own_test_digest(name: str) -> str:
    """The digest an extractor built by :func:`extractor_card` records for its test images:
    what an evaluation on its own test set names (``data_digest``)."""
    import hashlib

    return "sha256:" + hashlib.sha256(name.split("@")[0].encode()).hexdigest()


def extractor_card(name: str, anchors: list[str] | None = None, **cfg: Any) -> Card:
    return card_for(
        name=name,
        role="extractor",
        arch="resnet_cifar",
        config={**CFG, **cfg},
        split="stage2",
        input_size=16,
        compat={"anchors": anchors or [], "methods": ["RP"] if anchors else []},
        provenance={"dataset": {"name": "digits", "test": {"source": "digits", "data_digest": own_test_digest(name)}}},
    )


def head_card(name: str, anchors: list[str] | None = None, labels: list[str] = LABELS, **cfg: Any) -> Card:
    return card_for(
        name=name,
        role="head",
        arch="resnet_cifar",
        config={**CFG, **cfg},
        split="stage2",
        labels=labels,
        compat={"anchors": anchors or [], "methods": ["RP"] if anchors else []},
    )


def aux_rp(seed: int = 0, name: str = "lab/rp"):  # type: ignore[no-untyped-def]
    cfg = {**CFG, "num_classes": 4}
    net = network(seed, num_classes=4)
    return net.head(), card_for(
        name=name, role="aux-rp", arch="resnet_cifar", config=cfg, split="stage2", labels=["0", "90", "180", "270"]
    )


def write_component(path: Path, module: torch.nn.Module, card: Card, embed: bool = True) -> Path:
    save_state_dict(module.state_dict(), path, {CARD_METADATA_KEY: card.embedded_json()} if embed else None)
    return path


def raw_safetensors(header: dict[str, Any], data: bytes, header_len: int | None = None) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h) if header_len is None else header_len) + h + data
