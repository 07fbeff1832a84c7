"""The detector: scale table, parameter counts and GFLOPs, output shapes, decoding, bias priors, fusing."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.model.detector import (
    SCALES,
    STRIDES,
    Detector,
    ModelConfig,
    count_gflops,
    count_parameters,
    model_summary,
    scaled_depth,
    scaled_width,
)

# Published YOLOv8 model table at 80 classes: parameters, and GFLOPs at 640.
PUBLISHED = {
    "n": (3_157_200, 8.7),
    "s": (11_166_560, 28.6),
    "m": (25_902_640, 78.9),
    "l": (43_691_520, 165.2),
    "x": (68_229_648, 257.8),
}
# Ours: the same architecture, minus the 16 weights of the fixed DFL projection, which is a buffer here.
EXPECTED_PARAMETERS = {scale: params - 16 for scale, (params, _) in PUBLISHED.items()}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def nano() -> Detector:
    torch.manual_seed(0)
    return Detector(ModelConfig(scale="n", num_classes=7))


def test_scale_table():
    assert SCALES == {"n": (0.33, 0.25, 1024), "s": (0.33, 0.50, 1024), "m": (0.67, 0.75, 768),
                      "l": (1.00, 1.00, 512), "x": (1.00, 1.25, 512)}
    assert scaled_width(1024, 0.25, 1024) == 256 and scaled_width(1024, 0.75, 768) == 576
    assert scaled_width(64, 1.25, 512) == 80 and scaled_width(1024, 1.25, 512) == 640
    assert scaled_depth(3, 0.33) == 1 and scaled_depth(6, 0.67) == 4 and scaled_depth(3, 1.0) == 3


@pytest.mark.parametrize("scale", list(SCALES))
def test_parameter_count_and_gflops_per_scale(scale):
    model = Detector(ModelConfig(scale=scale, num_classes=80))
    parameters = count_parameters(model)
    published_parameters, published_gflops = PUBLISHED[scale]
    assert parameters == EXPECTED_PARAMETERS[scale]
    assert abs(parameters - published_parameters) / published_parameters < 0.01
    gflops = count_gflops(model, 640)
    print(f"scale {scale}: {parameters:,} parameters, {gflops:.2f} GFLOPs at 640")
    assert gflops == pytest.approx(published_gflops, rel=0.01)


def test_parameter_count_depends_on_classes():
    """Only the last class conv and the class branch width (max(P3 channels, min(nc, 100))) depend on nc."""
    seven, eighty = Detector(ModelConfig(num_classes=7)), Detector(ModelConfig(num_classes=80))
    assert count_parameters(seven) < count_parameters(eighty)


@pytest.mark.parametrize("height,width", [(64, 64), (96, 64), (64, 160)])
def test_output_shapes_train_and_eval(nano, height, width):
    images = torch.rand(2, 3, height, width)
    nano.train()
    raw = nano(images)
    assert [tuple(o.shape) for o in raw] == [(2, 4 * 16 + 7, height // s, width // s) for s in STRIDES]
    nano.eval()
    with torch.no_grad():
        decoded = nano(images)
    anchors = sum((height // s) * (width // s) for s in STRIDES)
    assert decoded.shape == (2, 4 + 7, anchors)
    scores = decoded[:, 4:]
    assert (scores >= 0).all() and (scores <= 1).all()
    assert (decoded[:, 2:4] > 0).all()  # widths and heights


@pytest.mark.parametrize("scale", list(SCALES))
def test_every_scale_runs(scale):
    model = Detector(ModelConfig(scale=scale, num_classes=3)).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 32)).shape == (1, 7, 8 * 4 + 4 * 2 + 2 * 1)


def test_decode_matches_the_dfl_encoding(nano):
    """Raw maps whose DFL logits peak on bin k decode to a box reaching k strides from each anchor point."""
    nano.eval()
    height, width = 64, 96
    raw = [torch.zeros(1, 4 * 16 + 7, height // s, width // s) for s in STRIDES]
    distances = torch.tensor([2, 3, 5, 1])  # left, top, right, bottom in strides
    for level in raw:
        for side, bin_index in enumerate(distances):
            level[0, side * 16 + bin_index] = 50.0  # softmax ~ one-hot
    decoded = nano.decode(raw)
    # level 0 (stride 8), first anchor point: centre (4, 4) px
    cx, cy, w, h = decoded[0, :4, 0].tolist()
    x1, y1, x2, y2 = 4 - 2 * 8, 4 - 3 * 8, 4 + 5 * 8, 4 + 1 * 8
    assert (cx, cy, w, h) == pytest.approx(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), abs=1e-3)
    # last anchor point (level 2, stride 32, cell (1, 2)): centre (80, 48) px
    cx, cy, w, h = decoded[0, :4, -1].tolist()
    x1, y1, x2, y2 = 80 - 2 * 32, 48 - 3 * 32, 80 + 5 * 32, 48 + 1 * 32
    assert (cx, cy, w, h) == pytest.approx(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), abs=1e-3)
    assert torch.allclose(decoded[0, 4:], torch.full((7, decoded.shape[-1]), 0.5))  # logits 0 -> 0.5


def test_bias_priors():
    config = ModelConfig(num_classes=10)
    model = Detector(config)
    for cls_branch, box_branch, stride in zip(model.head.cls_branches, model.head.box_branches, STRIDES):
        prior = config.prior_objects_per_image / (10 * (config.prior_image_size / stride) ** 2)
        assert torch.allclose(cls_branch[-1].bias, torch.full((10,), math.log(prior / (1 - prior))))
        assert box_branch[-1].bias.eq(box_branch[-1].bias[0]).all()  # uniform over bins
    # at init the class scores are small (rare objects), and boxes start mid-range: 7.5 strides per side
    model.eval()
    with torch.no_grad():
        decoded = model(torch.rand(1, 3, 64, 64))
    assert decoded[0, 4:].max() < 0.05
    first_level = decoded[0, 2, :64]  # widths on the stride-8 level
    assert first_level.mean().item() == pytest.approx(2 * 7.5 * 8, rel=0.15)


def test_fuse_keeps_outputs(nano):
    model = Detector(ModelConfig(scale="n", num_classes=7))
    model.load_state_dict(nano.state_dict())
    model.train()
    with torch.no_grad():  # a few train-mode passes give the BatchNorms non-trivial running statistics
        for _ in range(3):
            model(torch.rand(2, 3, 64, 64))
    model.eval()
    images = torch.rand(2, 3, 96, 64)
    with torch.no_grad():
        before = model(images)
        fused = model.fuse()
        after = fused(images)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert torch.allclose(before, after, atol=1e-3, rtol=1e-3)
    with pytest.raises(RuntimeError, match="fused"):
        fused.train()


def test_gflops_scale_with_image_area_and_do_not_touch_the_model(nano):
    state = {k: v.clone() for k, v in nano.state_dict().items()}
    nano.train()
    square = count_gflops(nano, 320)
    assert count_gflops(nano, (320, 640)) == pytest.approx(2 * square, rel=0.01)
    assert nano.training  # mode restored
    assert all(torch.equal(state[k], v) for k, v in nano.state_dict().items())  # no BN statistic changed


def test_summary_line(nano):
    line = model_summary(nano, 640)
    assert f"{count_parameters(nano):,} parameters" in line and "GFLOPs at 640x640" in line and "\n" not in line


def test_bad_config():
    with pytest.raises(ValueError, match="scale"):
        Detector(ModelConfig(scale="q"))
    with pytest.raises(ValueError, match="num_classes"):
        Detector(ModelConfig(num_classes=0))
    with pytest.raises(ValueError, match="reg_max"):
        Detector(ModelConfig(reg_max=1))
