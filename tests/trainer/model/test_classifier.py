"""The classifier: exact parameter counts per scale, the head's shape, any input size, fuse, bad configs."""

from __future__ import annotations

import pytest
import torch

from trainer.model.classifier import HEAD_CHANNELS, Classifier, ClassifierConfig, classifier_summary
from trainer.model.detector import count_gflops, count_parameters

# 1000 classes (ImageNet). These equal the published YOLOv8-cls model summaries (the same backbone family and
# head); YOLOv5-cls's C3 backbone gives n 2.5M / s 5.4M / m 12.9M (bench/README.md compares them).
EXPECTED_PARAMETERS = {"n": 2_719_288, "s": 6_361_736, "m": 17_053_336, "l": 37_480_744, "x": 57_422_840}


@pytest.mark.parametrize("scale", list(EXPECTED_PARAMETERS))
def test_parameter_counts(scale: str) -> None:
    model = Classifier(ClassifierConfig(scale=scale, num_classes=1000))
    assert count_parameters(model) == EXPECTED_PARAMETERS[scale]
    # the linear layer is the only part that depends on the class count
    smaller = Classifier(ClassifierConfig(scale=scale, num_classes=10))
    assert count_parameters(model) - count_parameters(smaller) == 990 * (HEAD_CHANNELS + 1)


def test_flops_at_224() -> None:
    model = Classifier(ClassifierConfig(scale="n"))
    at_224 = count_gflops(model, 224)
    assert 0.3 < at_224 < 0.6  # bench/README.md: 0.41 GFLOPs for n at 224
    assert count_gflops(model, 448) == pytest.approx(4 * at_224, rel=0.02)


def test_logits_shape_any_size_and_probabilities() -> None:
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(num_classes=7)).eval()
    for size in (32, 64, 96):
        assert model(torch.rand(2, 3, size, size)).shape == (2, 7)
    probabilities = model.probabilities(torch.rand(3, 3, 64, 64))
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(3))
    assert "YOLO classifier scale n: 7 classes" in classifier_summary(model, 64)


def test_fuse_keeps_outputs() -> None:
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(num_classes=5))
    model.train()
    for _ in range(2):  # give BatchNorm non-trivial running statistics
        model(torch.rand(4, 3, 64, 64))
    model.eval()
    images = torch.rand(2, 3, 64, 64)
    before = model(images)
    after = model.fuse()(images)
    assert torch.allclose(before, after, atol=1e-4)
    with pytest.raises(RuntimeError, match="fused"):
        model.train()


@pytest.mark.parametrize(("changes", "message"), [({"scale": "q"}, "scale"), ({"num_classes": 0}, "num_classes"),
                                                  ({"dropout": 1.0}, "dropout")])
def test_bad_configs(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Classifier(ClassifierConfig(**changes))
