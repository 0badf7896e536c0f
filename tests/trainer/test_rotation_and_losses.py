import pytest
import torch

from partsbin.trainer.engine import dcc_loss, rp_loss
from partsbin.trainer.rotation import ROTATION_LABELS, rotate_batch


def test_known_image_rotated_four_ways():
    img = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    rotated, labels = rotate_batch(img)
    assert ROTATION_LABELS == ["0", "90", "180", "270"]
    assert labels.tolist() == [0, 1, 2, 3]
    assert rotated[0, 0].tolist() == [[1, 2], [3, 4]]  # 0°
    assert rotated[1, 0].tolist() == [[2, 4], [1, 3]]  # 90° counter-clockwise
    assert rotated[2, 0].tolist() == [[4, 3], [2, 1]]  # 180°
    assert rotated[3, 0].tolist() == [[3, 1], [4, 2]]  # 270°


def test_rotated_batch_groups_by_angle():
    x = torch.randn(3, 1, 5, 5)
    rotated, labels = rotate_batch(x)
    assert labels.tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert torch.equal(rotated[3:6], torch.rot90(x, 1, dims=(2, 3)))
    with pytest.raises(ValueError, match="square"):
        rotate_batch(torch.randn(1, 1, 4, 5))


def test_rp_loss_averages_over_rotations():
    extractor = torch.nn.Flatten()
    head = torch.nn.Linear(4, 4)
    x = torch.randn(5, 1, 2, 2)
    rotated, labels = rotate_batch(x)
    per_angle = [
        torch.nn.functional.cross_entropy(head(extractor(rotated[k * 5 : (k + 1) * 5])), labels[k * 5 : (k + 1) * 5])
        for k in range(4)
    ]
    assert torch.allclose(rp_loss(extractor, head, x), torch.stack(per_angle).mean())


def test_dcc_loss_ignores_examples_outside_the_common_classes():
    head = torch.nn.Linear(3, 2)
    to_dcc = torch.tensor([-1, 0, 1])  # task class 0 is not common; 1 and 2 are
    feats = torch.randn(6, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 0])
    loss = dcc_loss(head, feats, y, to_dcc)
    loss.backward()
    outside = y == 0
    assert torch.all(feats.grad[outside] == 0) and torch.any(feats.grad[~outside] != 0)
    # Changing the non-common examples changes nothing.
    feats2 = feats.detach().clone()
    feats2[outside] = torch.randn(int(outside.sum()), 3) * 100
    assert torch.allclose(dcc_loss(head, feats2, y, to_dcc), loss.detach())
    # Summed over common examples and divided by the batch size (Eq. 2).
    expect = torch.nn.functional.cross_entropy(head(feats[~outside]), to_dcc[y[~outside]], reduction="sum") / 6
    assert torch.allclose(loss, expect)
    # A batch without common classes contributes zero, with a graph.
    none = dcc_loss(head, feats[outside], y[outside], to_dcc)
    assert none.item() == 0 and none.requires_grad
