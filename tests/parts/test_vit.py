"""The ViT family and the token feature interface (issue 24, item 2), without a registry."""

from __future__ import annotations

import pytest
import torch

from partsbin.parts.archs import ArchError, build, junction_layout, junction_of, part_layout
from partsbin.parts.card import Card, Junction, junctions_compatible
from partsbin.parts.describe import card_for
from partsbin.parts.errors import InvalidCard

VIT = {"img_size": 8, "patch_size": 2, "dim": 32, "depth": 2, "heads": 2, "in_chans": 1, "num_classes": 5}


@pytest.mark.parametrize("class_token", [False, True])
def test_vit_splits_into_token_extractor_and_head(class_token):
    torch.manual_seed(0)
    net = build("vit", **VIT, class_token=class_token).eval()
    x = torch.randn(3, 1, 8, 8)
    tokens = net.extractor()(x)
    assert tokens.shape == (3, 16 + class_token, 32)
    assert torch.equal(net.head()(tokens), net(x))
    assert net.split == "block1" and net.split_points == ("block1",)
    info = net.junction_info
    assert (info.layout, info.num_chs, info.size) == ("tokens", 32, 16 + class_token)
    # The head holds no position embedding: it takes any number of tokens.
    assert net.head()(tokens[:, :5]).shape == (3, 5)


def test_vit_config_is_bounded_and_consistent():
    with pytest.raises(ArchError, match="patch_size 3 must divide img_size 8"):
        build("vit", **{**VIT, "patch_size": 3})
    with pytest.raises(ArchError, match="heads 3 must divide dim 32"):
        build("vit", **{**VIT, "heads": 3})
    with pytest.raises(ArchError, match="depth"):
        build("vit", **{**VIT, "depth": 10**6})
    with pytest.raises(ArchError, match="unknown split point 'block2'"):
        build("vit", **VIT, split="block2")
    with pytest.raises(ValueError, match="takes 8x8 images"):
        build("vit", **VIT)(torch.randn(1, 1, 16, 16))


def test_token_junction_on_the_card():
    assert junction_of("vit", VIT, None, 8) == (32, 16)
    assert junction_layout("vit", VIT, None) == "tokens"
    # The position embedding fixes the input size: a card saying otherwise is refused.
    with pytest.raises(ArchError, match="takes inputs of size 8 only, not 16"):
        junction_of("vit", VIT, None, 16)
    ext = card_for(name="lab/v", role="extractor", arch="vit", config=VIT, split="block1", input_size=8)
    assert ext.interface.junction == Junction(channels=32, spatial=16, layout="tokens")
    head = card_for(name="lab/vh", role="head", arch="vit", config=VIT, split="block1", labels=list("abcde"))
    assert head.interface.junction.model_dump() == {"channels": 32, "spatial": "any", "layout": "tokens"}
    assert junctions_compatible(ext.interface.junction, head.interface.junction)
    with pytest.raises(InvalidCard, match="takes inputs of size 8 only"):
        card_for(name="lab/v", role="extractor", arch="vit", config=VIT, split="block1", input_size=28)


def test_spatial_and_token_junctions_never_meet():
    spatial = Junction(channels=32, spatial=16)
    tokens = Junction(channels=32, spatial=16, layout="tokens")
    assert not junctions_compatible(spatial, tokens) and not junctions_compatible(tokens, spatial)
    assert not junctions_compatible(tokens, Junction(channels=32, spatial="any"))
    # Spatial junctions keep the JSON they had before layouts existed (the bytes embedded in files).
    assert spatial.model_dump() == {"channels": 32, "spatial": 16}
    assert Junction.model_validate({"channels": 32, "spatial": 16}).layout == "spatial"
    with pytest.raises(ValueError, match="layout"):
        Junction.model_validate({"channels": 32, "spatial": 16, "layout": "graph"})


def test_token_bridges_both_ways():
    torch.manual_seed(0)
    tokens = torch.randn(4, 17, 32)  # a class token and a 4x4 grid of patch tokens
    to_cnn = build("tokens_to_spatial", in_chans=32, tokens=17, class_token=True, out_chans=8, out_size=6)
    assert to_cnn(tokens).shape == (4, 8, 6, 6)
    to_cnn_cfg = {"in_chans": 32, "tokens": 17, "class_token": True, "out_chans": 8}
    assert part_layout("tokens_to_spatial", to_cnn_cfg, "full", None).input_layout == "tokens"
    assert junction_of("tokens_to_spatial", to_cnn_cfg, None, 17) == (8, 4)
    to_vit = build("spatial_to_tokens", in_chans=8, in_size=6, out_dim=32, tokens=9)
    out = to_vit(torch.randn(4, 8, 6, 6))
    assert out.shape == (4, 9, 32)
    assert junction_layout("spatial_to_tokens", {"in_chans": 8, "in_size": 6, "out_dim": 32}, None) == "tokens"
    assert build("token_stitch", in_chans=32, tokens=17, out_dim=16)(tokens).shape == (4, 17, 16)
    with pytest.raises(ArchError, match="square number of tokens"):
        build("tokens_to_spatial", in_chans=32, tokens=17, out_chans=8)


def test_an_adapter_card_between_layouts():
    # What the stitching job publishes for a ViT extractor (16 patch tokens) to a CNN head.
    card = card_for(
        name="lab/vit-to-cnn",
        role="adapter",
        arch="tokens_to_spatial",
        config={"in_chans": 32, "tokens": 16, "out_chans": 8, "out_size": 4},
        split="adapter",
        input_size=16,
        bridge={"from": "sha256:" + "a" * 64, "to": "sha256:" + "b" * 64},
    )
    assert isinstance(card, Card)
    assert card.interface.junction == Junction(channels=8, spatial=4)
    assert (card.interface.input.channels, card.interface.input.size) == (32, 16)
