"""The stride-4 P2 level (`--model n-p2` ... `x-p2`): shapes, strides, and parameter counts that equal a count
taken independently from the published YOLOv8 / YOLOv8-p2 layer lists (the count is checked against the
published YOLOv8 table first, so it is known to count what Ultralytics counts)."""

from __future__ import annotations

import math

import pytest
import torch

from tests.trainer.model.test_detector import PUBLISHED
from trainer.config import TrainConfig, parse_model_name
from trainer.model.detector import P2_STRIDES, SCALES, Detector, ModelConfig, count_gflops, count_parameters
from trainer.model.loss import DetectionLoss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# [from, repeats, module, args] of ultralytics/cfg/models/v8/yolov8.yaml and yolov8-p2.yaml (AGPL-3.0, facts only)
BACKBONE = [(-1, 1, "Conv", 64, 3, 2), (-1, 1, "Conv", 128, 3, 2), (-1, 3, "C2f", 128, True),
            (-1, 1, "Conv", 256, 3, 2), (-1, 6, "C2f", 256, True), (-1, 1, "Conv", 512, 3, 2),
            (-1, 6, "C2f", 512, True), (-1, 1, "Conv", 1024, 3, 2), (-1, 3, "C2f", 1024, True),
            (-1, 1, "SPPF", 1024)]
HEAD_P3 = [(-1, 1, "Up"), ((-1, 6), 1, "Cat"), (-1, 3, "C2f", 512, False),
           (-1, 1, "Up"), ((-1, 4), 1, "Cat"), (-1, 3, "C2f", 256, False),
           (-1, 1, "Conv", 256, 3, 2), ((-1, 12), 1, "Cat"), (-1, 3, "C2f", 512, False),
           (-1, 1, "Conv", 512, 3, 2), ((-1, 9), 1, "Cat"), (-1, 3, "C2f", 1024, False),
           ((15, 18, 21), 1, "Detect")]
HEAD_P2 = [(-1, 1, "Up"), ((-1, 6), 1, "Cat"), (-1, 3, "C2f", 512, False),
           (-1, 1, "Up"), ((-1, 4), 1, "Cat"), (-1, 3, "C2f", 256, False),
           (-1, 1, "Up"), ((-1, 2), 1, "Cat"), (-1, 3, "C2f", 128, False),
           (-1, 1, "Conv", 128, 3, 2), ((-1, 15), 1, "Cat"), (-1, 3, "C2f", 256, False),
           (-1, 1, "Conv", 256, 3, 2), ((-1, 12), 1, "Cat"), (-1, 3, "C2f", 512, False),
           (-1, 1, "Conv", 512, 3, 2), ((-1, 9), 1, "Cat"), (-1, 3, "C2f", 1024, False),
           ((18, 21, 24, 27), 1, "Detect")]


def _conv(cin: int, cout: int, k: int) -> int:
    return k * k * cin * cout + 2 * cout  # no conv bias; BatchNorm weight and bias


def _c2f(cin: int, cout: int, n: int) -> int:
    hidden = cout // 2
    return _conv(cin, 2 * hidden, 1) + n * 2 * _conv(hidden, hidden, 3) + _conv((2 + n) * hidden, cout, 1)


def published_layout_parameters(head: list, scale: str, nc: int, reg_max: int = 16) -> int:
    """Parameters of the yaml's model at a scale, counted from the layer list alone (with the DFL conv's 16)."""
    depth, width, max_channels = SCALES[scale]
    channels: list[int] = []
    total = 0
    for source, repeats, module, *args in BACKBONE + head:
        cin = (channels[source] if channels else 3) if isinstance(source, int) else None
        n = max(round(repeats * depth), 1) if repeats > 1 else repeats
        out = math.ceil(min(args[0], max_channels) * width / 8) * 8 if args else None
        if module == "Conv":
            total += _conv(cin, out, args[1])
        elif module == "C2f":
            total += _c2f(cin, out, n)
        elif module == "SPPF":
            total += _conv(cin, cin // 2, 1) + _conv(4 * (cin // 2), out, 1)
        elif module == "Up":
            out = cin
        elif module == "Cat":
            out = sum(channels[s] for s in source)
        elif module == "Detect":
            levels = [channels[s] for s in source]
            box, cls = max(16, levels[0] // 4, 4 * reg_max), max(levels[0], min(nc, 100))
            for c in levels:
                total += _conv(c, box, 3) + _conv(box, box, 3) + box * 4 * reg_max + 4 * reg_max
                total += _conv(c, cls, 3) + _conv(cls, cls, 3) + cls * nc + nc
            total += reg_max  # the DFL projection conv (a buffer in ours)
        channels.append(out)
    return total


@pytest.mark.parametrize("scale", list(SCALES))
def test_the_layout_count_reproduces_the_published_yolov8_table(scale):
    assert published_layout_parameters(HEAD_P3, scale, 80) == PUBLISHED[scale][0]


@pytest.mark.parametrize("scale", list(SCALES))
def test_p2_parameter_counts_are_the_published_p2_layout(scale):
    for nc in (80, 7):
        model = Detector(ModelConfig(scale=scale, num_classes=nc, p2=True))
        assert count_parameters(model) == published_layout_parameters(HEAD_P2, scale, nc) - 16
    # the head's hidden widths follow its first (now P2) level, so P2 models are not larger than P3 ones
    assert model.head.cls_branches[0][0].conv.in_channels == model.head.cls_branches[1][0].conv.in_channels // 2


def test_p2_shapes_strides_gflops_and_loss():
    torch.manual_seed(0)
    model = Detector(ModelConfig(scale="n", num_classes=3, p2=True))
    assert model.strides == P2_STRIDES == (4, 8, 16, 32)
    outputs = model.train()(torch.randn(2, 3, 64, 96))
    channels = 4 * 16 + 3
    assert [tuple(o.shape) for o in outputs] == [(2, channels, 64 // s, 96 // s) for s in P2_STRIDES]
    anchors = sum((64 // s) * (96 // s) for s in P2_STRIDES)
    assert tuple(model.eval()(torch.randn(1, 3, 64, 96)).shape) == (1, 4 + 3, anchors)
    # a 6 px box: the loss trains it through the stride-4 level
    targets = torch.tensor([[0, 1, 0.5, 0.5, 6 / 96, 6 / 64]])
    loss, items = DetectionLoss.for_model(model)(model.train()(torch.randn(1, 3, 64, 96)), targets)
    loss.backward()
    assert torch.isfinite(loss) and items[0] > 0  # a positive anchor was found: box loss is measured
    # the P2 level costs compute: more GFLOPs than the P3 model at the same size
    assert count_gflops(model, 640) > 1.3 * count_gflops(Detector(ModelConfig(scale="n", num_classes=3)), 640)


def test_model_names():
    assert parse_model_name("n") == ("n", False) and parse_model_name("x-p2") == ("x", True)
    assert TrainConfig(model="s-p2").checked().model == "s-p2"
