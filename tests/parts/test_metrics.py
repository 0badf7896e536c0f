import pytest
import torch

from partsbin.parts.metrics import recombination_accuracy, shared_classes, wilson_interval


def test_restricted_to_common_classes_by_name():
    # Data (task a) knows cat, dog, cow; the head (task b) knows dog, cat, bird.
    data_labels, head_labels = ["cat", "dog", "cow"], ["dog", "cat", "bird"]
    targets = torch.tensor([0, 1, 2, 0])  # cat, dog, cow (not common: ignored), cat
    logits = torch.tensor(
        [
            [0.0, 1.0, 5.0],  # cat: bird wins overall, cat wins among common -> restricted right, unrestricted wrong
            [2.0, 1.0, 0.0],  # dog: right both ways
            [9.0, 9.0, 9.0],  # cow: ignored
            [3.0, 1.0, 0.0],  # cat: says dog -> wrong
        ]
    )
    acc = recombination_accuracy(logits, targets, data_labels, head_labels)
    assert acc.n == 3
    assert acc.restricted == pytest.approx(2 / 3)
    assert acc.unrestricted == pytest.approx(1 / 3)
    assert acc.ci95[0] < 2 / 3 < acc.ci95[1]
    assert shared_classes(data_labels, head_labels) == ["cat", "dog"]


def test_other_direction_uses_the_other_tasks_images():
    # Extractor of b on b's images with a's head: a knows cat, dog, cow.
    acc = recombination_accuracy(
        torch.tensor([[0.0, 5.0, 9.0]]), torch.tensor([0]), ["dog", "cat", "bird"], ["cat", "dog", "cow"]
    )
    assert acc.n == 1 and acc.restricted == 1.0 and acc.unrestricted == 0.0
    with pytest.raises(ValueError, match="share no class"):
        recombination_accuracy(torch.zeros(1, 2), torch.tensor([0]), ["x"], ["y", "z"])


def test_wilson_interval():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0) and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
