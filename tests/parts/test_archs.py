import math
import re

import pytest
import torch

from partsbin.parts.archs import ArchConfig, ArchError, build, junction_of, list_archs, register

CASES = [
    ("resnet_cifar", {"depth": 20}, "stage2"),
    ("resnet_cifar", {"depth": 20}, "stage1"),
    ("resnet_cifar", {"depth": 56, "width": 8, "in_chans": 1}, "stage2"),
    ("wide_resnet", {"depth": 16, "widen": 2}, "stage2"),
    ("wide_resnet", {"depth": 10, "widen": 1}, "stage1"),
    ("mobilenetv2_cifar", {"width_mult": 0.5}, "block11"),
    ("mobilenetv2_cifar", {}, "block4"),
    ("resnet_cifar", {"depth": 20, "junction_channels": 64}, "stage2"),
]


@pytest.mark.parametrize("name,cfg,split", CASES)
def test_split_composes_to_the_network(name, cfg, split):
    torch.manual_seed(0)
    net = build(name, split=split, **cfg)
    net.train()
    net(torch.randn(4, cfg.get("in_chans", 3), 32, 32))  # make running stats non-trivial
    net.eval()
    x = torch.randn(3, cfg.get("in_chans", 3), 32, 32)
    feats = net.extractor()(x)
    assert torch.equal(net.head()(feats), net(x))
    # The declared feature interface is what the extractor really produces.
    channels, spatial = junction_of(name, cfg, split, 32)
    assert feats.shape[1:] == (channels, spatial, spatial)
    # Parts partition the network's state dict.
    e, h = net.extractor().state_dict(), net.head().state_dict()
    assert set(e).isdisjoint(h) and set(e) | set(h) == set(net.state_dict())


def test_paper_split_points():
    # ResNet-56 after stage 2: 32 channels at 16x16 for CIFAR inputs.
    assert junction_of("resnet_cifar", {"depth": 56}, None, 32) == (32, 16)
    # MobileNetV2 after inverted-residual block 11 (of 17): 96 channels at 8x8.
    assert junction_of("mobilenetv2_cifar", {}, None, 32) == (96, 8)
    assert build("mobilenetv2_cifar", device="meta").split == "block11"
    assert sum(1 for n, _ in build("mobilenetv2_cifar", device="meta").named_children() if n.startswith("block")) == 17
    # WRN-28-10 after stage 2: 320 channels.
    assert junction_of("wide_resnet", {"depth": 28, "widen": 10}, None, 32) == (320, 16)
    # Odd input sizes round up, as padded stride-2 convolutions do.
    assert junction_of("resnet_cifar", {"depth": 20}, None, 15) == (32, math.ceil(15 / 2))


def test_heads_accept_any_spatial_size():
    net = build("resnet_cifar", depth=20)
    assert net.head()(torch.randn(2, 32, 5, 5)).shape == (2, 10)


def test_errors_name_what_is_wrong():
    with pytest.raises(ArchError, match="unknown architecture 'nope'"):
        build("nope")
    with pytest.raises(ArchError, match="unknown split point 'stage4'"):
        build("resnet_cifar", split="stage4")
    with pytest.raises(ValueError, match="6n\\+2"):
        build("resnet_cifar", depth=21)
    with pytest.raises(ArchError, match="bad configuration"):
        build("resnet_cifar", colour="red")
    with pytest.raises(ArchError, match="already registered"):
        register("resnet_cifar", ArchConfig)(lambda **kw: None)
    assert {"resnet_cifar", "wide_resnet", "mobilenetv2_cifar"} <= set(list_archs())


@pytest.mark.parametrize(
    "name, config, message",
    [
        ("resnet_cifar", {"width": -1}, "config.width: Input should be greater than or equal to 1"),
        ("resnet_cifar", {"depth": 6 * 10**6 + 2}, "config.depth: Input should be less than or equal to 1202"),
        ("resnet_cifar", {"depth": 20.0}, "config.depth: Input should be a valid integer"),
        ("resnet_cifar", {"num_classes": True}, "config.num_classes: Input should be a valid integer"),
        ("resnet_cifar", {"junction_channels": 0}, "config.junction_channels"),
        ("resnet_cifar", {"in_chans": 2**70}, "config.in_chans"),
        ("wide_resnet", {"widen": 10**9}, "config.widen"),
        ("wide_resnet", {"dropout": float("nan")}, "config.dropout"),
        ("mobilenetv2_cifar", {"width_mult": -0.5}, "config.width_mult"),
        ("mobilenetv2_cifar", {"width_mult": float("inf")}, "config.width_mult"),
    ],
)
def test_every_config_is_checked_against_its_schema_before_building(name, config, message):
    # Nothing is built: a bad config fails before the builder runs, on every entry point.
    from partsbin.parts.archs import junction_of, part_layout, validate_config

    for attempt in (
        lambda: validate_config(name, config),
        lambda: build(name, **config),
        lambda: part_layout(name, config, "extractor", None),
        lambda: junction_of(name, config, None, 32),
    ):
        with pytest.raises(ArchError, match=re.escape(message)):
            attempt()


def test_meta_build_allocates_nothing():
    net = build("wide_resnet", depth=28, widen=10, device="meta")
    assert all(p.device.type == "meta" for p in net.parameters())


def test_part_layout_matches_the_built_part_and_is_built_once():
    from partsbin.parts.archs import part_layout

    cfg = {"depth": 8, "width": 4, "num_classes": 3}
    layout = part_layout("resnet_cifar", cfg, "head", "stage2")
    head = build("resnet_cifar", **cfg).head()
    assert layout.tensors == {k: (tuple(v.shape), v.dtype) for k, v in head.state_dict().items()}
    assert layout.junction.num_chs == build("resnet_cifar", **cfg).junction_info.num_chs
    # Key order of the config does not matter; a different config is a different layout.
    assert part_layout("resnet_cifar", dict(reversed(list(cfg.items()))), "head", "stage2") is layout
    assert part_layout("resnet_cifar", {**cfg, "num_classes": 5}, "head", "stage2").tensors["fc.weight"][0] == (5, 16)


def test_card_for_says_what_is_wrong_in_partsbin_terms():
    import pytest

    from partsbin import InvalidCard, PartsbinError
    from partsbin.parts.describe import card_for

    cfg = {"depth": 8, "width": 4, "in_chans": 1, "num_classes": 3}
    with pytest.raises(InvalidCard, match="unknown role 'heads'"):
        card_for(name="lab/x", role="heads", arch="resnet_cifar", config=cfg, split="stage2")
    with pytest.raises(InvalidCard, match="card: arch:"):
        card_for(name="lab/x", role="head", arch="no_such_arch", config=cfg, split="stage2", labels=["a"])
    with pytest.raises(InvalidCard, match=r"card\.name") as err:
        card_for(name="Lab/X", role="head", arch="resnet_cifar", config=cfg, split="stage2", labels=["a", "b", "c"])
    assert isinstance(err.value, PartsbinError) and "validation error" not in str(err.value)
    with pytest.raises(InvalidCard, match="needs input_size"):
        card_for(name="lab/x", role="extractor", arch="resnet_cifar", config=cfg, split="stage2")
