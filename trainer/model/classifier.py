"""The image classifier: the detector's backbone of each scale with a YOLOv5-cls style head.

    stem -> stages P2..P5 (stride-2 conv + C2f each, as detector.Backbone)  ->  1x1 conv to 1280  ->  global
    average pool  ->  dropout  ->  linear (num_classes logits)

YOLOv5-cls (YOLOv5 v6.2) and YOLOv8-cls build their classifiers the same way: the detection backbone up to P5,
without SPPF (spatial pyramid pooling adds context for boxes of many sizes; a global pool that follows it
makes it redundant), and a head that widens to 1280 channels before pooling, as EfficientNet / MobileNetV2 do:
the wide 1x1 conv gives the pooled vector room for many class-specific features at little cost, since it runs
on the 7x7 P5 map of a 224 px input. The classification models of the family keep P5's base width uncapped
(1024 channels times the width multiple) where the detectors cap it (detector.SCALES' max_channels): the
P5 map is small, so its width is cheap, and the head's 1280 wants a wide input.

Scale is data, as for the detector: CLASSIFIER_SCALES[scale] = (depth_multiple, width_multiple, max_channels).
Blocks come from trainer/model/detector.py, so the two networks share their building blocks and `fuse()`.
Forward returns logits (B, num_classes) in train and eval mode; `probabilities()` gives the softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trainer.config import MODEL_SCALES
from trainer.model.detector import SCALES, C2f, ConvBNAct, FusableModel, scaled_depth, scaled_width

# The detector's depth and width multiples; P5 uncapped (max_channels 1024 for every scale), see the docstring.
CLASSIFIER_SCALES: dict[str, tuple[float, float, int]] = {
    scale: (depth, width, 1024) for scale, (depth, width, _) in SCALES.items()}
HEAD_CHANNELS = 1280  # the head's 1x1 conv width (YOLOv5-cls, EfficientNet-B0, MobileNetV2)
assert tuple(CLASSIFIER_SCALES) == MODEL_SCALES


@dataclass
class ClassifierConfig:
    scale: str = "n"  # one of CLASSIFIER_SCALES: n s m l x
    num_classes: int = 1000  # classes (sorted class folder names)
    in_channels: int = 3  # input image channels (RGB)
    dropout: float = 0.0  # dropout before the linear layer (YOLOv5-cls trains with 0.0 by default)
    # BatchNorm momentum: PyTorch's default, what torchvision's classifiers train with, not the detector's 0.03:
    # running statistics settle in ~30 steps instead of ~100, so short runs on small class folders evaluate
    # with the statistics of the weights they ended with (at 0.03 a 60-step run predicts one class in eval mode)
    bn_momentum: float = 0.1


class ClassifyHead(nn.Module):
    """1x1 conv to HEAD_CHANNELS, global average pool, dropout, linear: features (B, C, H, W) -> logits (B, K)."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.conv = ConvBNAct(in_channels, HEAD_CHANNELS, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.linear = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.dropout(self.pool(self.conv(x)).flatten(1)))


class Classifier(FusableModel):
    """`Classifier(ClassifierConfig(scale="s", num_classes=10))`; images (B, 3, H, W) -> logits (B, num_classes).

    Any input size works (the pool is global); 224 is the family's training size.
    """

    def __init__(self, config: ClassifierConfig | None = None):
        super().__init__()
        self.config = config = config or ClassifierConfig()
        if config.scale not in CLASSIFIER_SCALES:
            raise ValueError(f"unknown model scale {config.scale!r}; choose one of {', '.join(CLASSIFIER_SCALES)}")
        if config.num_classes < 1:
            raise ValueError("num_classes must be at least 1")
        if not 0.0 <= config.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        depth_multiple, width_multiple, max_channels = CLASSIFIER_SCALES[config.scale]
        widths = {c: scaled_width(c, width_multiple, max_channels) for c in (64, 128, 256, 512, 1024)}
        stages: list[nn.Module] = [ConvBNAct(config.in_channels, widths[64], 3, 2)]  # P1/2
        for base_in, base_out, repeats in ((64, 128, 3), (128, 256, 6), (256, 512, 6), (512, 1024, 3)):  # P2..P5
            stages.append(nn.Sequential(ConvBNAct(widths[base_in], widths[base_out], 3, 2),
                                        C2f(widths[base_out], widths[base_out], scaled_depth(repeats, depth_multiple),
                                            True)))
        self.backbone = nn.Sequential(*stages)
        self.head = ClassifyHead(widths[1024], config.num_classes, config.dropout)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = config.bn_momentum
        self.fused = False

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.backbone(images))

    @torch.no_grad()
    def probabilities(self, images: Tensor) -> Tensor:
        """Softmax over the classes, (B, num_classes)."""
        return self(images).softmax(dim=1)



def classifier_summary(model: Classifier, image_size: int = 224) -> str:
    """One line for logs: scale, classes, parameters and GFLOPs at image_size."""
    from trainer.model.detector import count_gflops, count_parameters

    config = model.config
    return (f"YOLO classifier scale {config.scale}: {config.num_classes} classes, {count_parameters(model):,} "
            f"parameters, {count_gflops(model, image_size):.2f} GFLOPs at {image_size}x{image_size}")
