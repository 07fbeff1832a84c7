"""The detector: a YOLOv8-style anchor-free network, written from its documented architecture.

    backbone (CSPDarknet with C2f blocks, SPPF)  ->  PAN-FPN neck  ->  decoupled head (box: DFL, class: logits)
    strides 8, 16, 32 (P3, P4, P5); with `p2` (`--model n-p2`, the published YOLOv8-p2 configs) also 4 (P2)

Scale is data: SCALES[scale] = (depth_multiple, width_multiple, max_channels). Layer widths are the base widths
(64 ... 1024) capped at max_channels, times width_multiple, rounded up to a multiple of 8; block repeats are the
base repeats (3 or 6) times depth_multiple, rounded, at least 1.

Box regression uses Distribution Focal Loss's representation (Li et al., "Generalized Focal Loss", NeurIPS
2020): each side's distance from the anchor point, in stride units, is a discrete distribution over reg_max bins
0 .. reg_max - 1 and the prediction is its expectation. The classification branch predicts per-class logits,
trained against IoU-aware soft targets (trainer/model/assign.py), so its sigmoid is also a localisation-quality score.

Train mode returns the raw per-level maps (what DetectionLoss takes); eval mode returns decoded predictions
(B, 4 + num_classes, anchors): cx, cy, w, h in input pixels, then class probabilities (what NMS takes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from trainer.config import MODEL_SCALES
from trainer.model.boxes import anchor_grid, distances_to_boxes, xyxy_to_cxcywh

# scale: (depth_multiple, width_multiple, max_channels), the published YOLOv8 multiples, for n s m l x.
SCALES: dict[str, tuple[float, float, int]] = dict(zip(MODEL_SCALES, (
    (0.33, 0.25, 1024),
    (0.33, 0.50, 1024),
    (0.67, 0.75, 768),
    (1.00, 1.00, 512),
    (1.00, 1.25, 512),
), strict=True))
STRIDES = (8, 16, 32)
P2_STRIDES = (4, 8, 16, 32)


@dataclass
class ModelConfig:
    scale: str = "n"  # one of SCALES: n s m l x, smallest to largest
    num_classes: int = 80  # number of object classes (nc in data.yaml)
    reg_max: int = 16  # DFL bins per box side: a side can reach reg_max - 1 strides from its anchor point
    in_channels: int = 3  # input image channels (RGB)
    prior_objects_per_image: float = 5.0  # expected objects per image, for the classification bias prior
    prior_image_size: int = 640  # image side the classification bias prior is computed at
    p2: bool = False  # a fourth, stride-4 detection level for tiny objects (NeckP2)
    cls_hidden: int | None = None  # class-branch width; None: max(P3 width, min(classes, 100)) as YOLOv8 (kept
    # from the source when fine-tuning, so its hidden layers transfer whatever the new class count)


def scaled_width(channels: int, width_multiple: float, max_channels: int) -> int:
    """Base width capped at max_channels, times the multiple, rounded up to a multiple of 8 (SIMD friendly)."""
    return int(math.ceil(min(channels, max_channels) * width_multiple / 8) * 8)


def scaled_depth(repeats: int, depth_multiple: float) -> int:
    return max(round(repeats * depth_multiple), 1)


class ConvBNAct(nn.Module):
    """Conv2d (no bias) -> BatchNorm -> SiLU; `fuse()` folds the BatchNorm into the conv for inference."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=False)
        # eps / momentum as in the YOLO family: momentum 0.03 smooths running stats over small batches.
        self.bn: nn.Module = nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """y = gamma * (Wx - mean) / sqrt(var + eps) + beta  ==  (scale * W) x + (beta - scale * mean)."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        bn = self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(self.conv.in_channels, self.conv.out_channels, self.conv.kernel_size, self.conv.stride,
                          self.conv.padding, bias=True).to(self.conv.weight.device, self.conv.weight.dtype)
        fused.weight.copy_(self.conv.weight * scale[:, None, None, None])
        fused.bias.copy_(bn.bias - scale * bn.running_mean)
        self.conv = fused
        self.bn = nn.Identity()


class Bottleneck(nn.Module):
    """Two 3x3 convs with an optional residual connection."""

    def __init__(self, channels: int, shortcut: bool):
        super().__init__()
        self.conv1 = ConvBNAct(channels, channels, 3)
        self.conv2 = ConvBNAct(channels, channels, 3)
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.shortcut else y


class C2f(nn.Module):
    """CSP block with two 1x1 convs and `repeats` bottlenecks whose every output is kept (YOLOv8's C2f).

    The input is projected and split in two halves; bottlenecks run on the second half one after the other and
    all intermediate maps are concatenated, so the block sees features of every depth (a richer gradient flow
    than CSP's single bottleneck chain) at little cost.
    """

    def __init__(self, in_channels: int, out_channels: int, repeats: int, shortcut: bool):
        super().__init__()
        self.hidden = out_channels // 2
        self.conv_in = ConvBNAct(in_channels, 2 * self.hidden, 1)
        self.blocks = nn.ModuleList(Bottleneck(self.hidden, shortcut) for _ in range(repeats))
        self.conv_out = ConvBNAct((2 + repeats) * self.hidden, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        parts = list(self.conv_in(x).chunk(2, dim=1))
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.conv_out(torch.cat(parts, dim=1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max pools = pools of 5, 9 and 13 (He et al. 2015's SPP)."""

    def __init__(self, in_channels: int, out_channels: int, pool: int = 5):
        super().__init__()
        hidden = in_channels // 2
        self.conv_in = ConvBNAct(in_channels, hidden, 1)
        self.pool = nn.MaxPool2d(pool, stride=1, padding=pool // 2)
        self.conv_out = ConvBNAct(4 * hidden, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)
        pooled1 = self.pool(x)
        pooled2 = self.pool(pooled1)
        return self.conv_out(torch.cat((x, pooled1, pooled2, self.pool(pooled2)), dim=1))


class Backbone(nn.Module):
    """CSPDarknet: a stride-2 conv then C2f per stage, SPPF on top; returns the P3, P4, P5 feature maps."""

    def __init__(self, in_channels: int, widths: dict[int, int], depth_multiple: float):
        super().__init__()
        self.stem = ConvBNAct(in_channels, widths[64], 3, 2)  # P1/2
        self.stage2 = nn.Sequential(ConvBNAct(widths[64], widths[128], 3, 2),
                                    C2f(widths[128], widths[128], scaled_depth(3, depth_multiple), True))  # P2/4
        self.stage3 = nn.Sequential(ConvBNAct(widths[128], widths[256], 3, 2),
                                    C2f(widths[256], widths[256], scaled_depth(6, depth_multiple), True))  # P3/8
        self.stage4 = nn.Sequential(ConvBNAct(widths[256], widths[512], 3, 2),
                                    C2f(widths[512], widths[512], scaled_depth(6, depth_multiple), True))  # P4/16
        self.stage5 = nn.Sequential(ConvBNAct(widths[512], widths[1024], 3, 2),
                                    C2f(widths[1024], widths[1024], scaled_depth(3, depth_multiple), True),
                                    SPPF(widths[1024], widths[1024]))  # P5/32

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p3 = self.stage3(self.stage2(self.stem(x)))
        p4 = self.stage4(p3)
        return p3, p4, self.stage5(p4)

    def with_p2(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The P2 (stride 4) map too, for NeckP2."""
        p2 = self.stage2(self.stem(x))
        p3 = self.stage3(p2)
        p4 = self.stage4(p3)
        return p2, p3, p4, self.stage5(p4)


class Neck(nn.Module):
    """PAN-FPN (Liu et al., "Path Aggregation Network", CVPR 2018): a top-down pass spreads semantics to the fine
    levels, then a bottom-up pass spreads localisation detail back to the coarse ones. No residuals in its C2f."""

    def __init__(self, widths: dict[int, int], depth_multiple: float):
        super().__init__()
        repeats = scaled_depth(3, depth_multiple)
        c3, c4, c5 = widths[256], widths[512], widths[1024]
        self.top_down4 = C2f(c5 + c4, c4, repeats, False)
        self.top_down3 = C2f(c4 + c3, c3, repeats, False)
        self.down3 = ConvBNAct(c3, c3, 3, 2)
        self.bottom_up4 = C2f(c3 + c4, c4, repeats, False)
        self.down4 = ConvBNAct(c4, c4, 3, 2)
        self.bottom_up5 = C2f(c4 + c5, c5, repeats, False)

    def forward(self, p3: Tensor, p4: Tensor, p5: Tensor) -> list[Tensor]:
        up = F.interpolate  # nearest, x2
        t4 = self.top_down4(torch.cat((up(p5, scale_factor=2.0), p4), dim=1))
        n3 = self.top_down3(torch.cat((up(t4, scale_factor=2.0), p3), dim=1))
        n4 = self.bottom_up4(torch.cat((self.down3(n3), t4), dim=1))
        n5 = self.bottom_up5(torch.cat((self.down4(n4), p5), dim=1))
        return [n3, n4, n5]


class NeckP2(nn.Module):
    """PAN-FPN extended one level down, as the published YOLOv8-p2 configs: the top-down pass continues to P2
    (upsample, concat with the backbone's stride-4 map, C2f at the P2 width), the bottom-up pass starts there.
    Four outputs, strides 4, 8, 16, 32: a box of 4-8 px now holds anchor centres of its own."""

    def __init__(self, widths: dict[int, int], depth_multiple: float):
        super().__init__()
        repeats = scaled_depth(3, depth_multiple)
        c2, c3, c4, c5 = widths[128], widths[256], widths[512], widths[1024]
        self.top_down4 = C2f(c5 + c4, c4, repeats, False)
        self.top_down3 = C2f(c4 + c3, c3, repeats, False)
        self.top_down2 = C2f(c3 + c2, c2, repeats, False)
        self.down2 = ConvBNAct(c2, c2, 3, 2)
        self.bottom_up3 = C2f(c2 + c3, c3, repeats, False)
        self.down3 = ConvBNAct(c3, c3, 3, 2)
        self.bottom_up4 = C2f(c3 + c4, c4, repeats, False)
        self.down4 = ConvBNAct(c4, c4, 3, 2)
        self.bottom_up5 = C2f(c4 + c5, c5, repeats, False)

    def forward(self, p2: Tensor, p3: Tensor, p4: Tensor, p5: Tensor) -> list[Tensor]:
        up = F.interpolate  # nearest, x2
        t4 = self.top_down4(torch.cat((up(p5, scale_factor=2.0), p4), dim=1))
        t3 = self.top_down3(torch.cat((up(t4, scale_factor=2.0), p3), dim=1))
        n2 = self.top_down2(torch.cat((up(t3, scale_factor=2.0), p2), dim=1))
        n3 = self.bottom_up3(torch.cat((self.down2(n2), t3), dim=1))
        n4 = self.bottom_up4(torch.cat((self.down3(n3), t4), dim=1))
        n5 = self.bottom_up5(torch.cat((self.down4(n4), p5), dim=1))
        return [n2, n3, n4, n5]


class DetectHead(nn.Module):
    """Decoupled head: per level, a box branch (4 * reg_max DFL logits) and a class branch (num_classes logits)."""

    def __init__(self, in_channels: list[int], num_classes: int, reg_max: int, strides: tuple[int, ...],
                 cls_hidden: int | None = None):
        super().__init__()
        self.num_classes, self.reg_max, self.strides = num_classes, reg_max, strides
        box_hidden = max(16, in_channels[0] // 4, 4 * reg_max)
        cls_hidden = cls_hidden or max(in_channels[0], min(num_classes, 100))
        self.box_branches = nn.ModuleList(
            nn.Sequential(ConvBNAct(c, box_hidden, 3), ConvBNAct(box_hidden, box_hidden, 3),
                          nn.Conv2d(box_hidden, 4 * reg_max, 1)) for c in in_channels)
        self.cls_branches = nn.ModuleList(
            nn.Sequential(ConvBNAct(c, cls_hidden, 3), ConvBNAct(cls_hidden, cls_hidden, 3),
                          nn.Conv2d(cls_hidden, num_classes, 1)) for c in in_channels)
        # Bin values 0 .. reg_max - 1: the expectation of the DFL distribution is softmax(logits) @ bins.
        self.register_buffer("bins", torch.arange(reg_max, dtype=torch.float32), persistent=False)
        self._anchor_cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    def init_biases(self, prior_objects_per_image: float, prior_image_size: int) -> None:
        """Start from sensible priors instead of noise (Lin et al., "Focal Loss", ICCV 2017, section 4.1).

        Class branch: with random init every anchor would predict p = 0.5 for every class, and the many easy
        background anchors would swamp the first updates. Set the bias to logit(pi), pi the prior probability
        that an anchor of this level holds an object of a given class: `prior_objects_per_image` objects spread
        over num_classes classes and the (image_size / stride)^2 anchors of the level.
        Box branch: equal biases give a uniform distribution over the bins, i.e. every side starts at the middle
        of its range, (reg_max - 1) / 2 strides, with no preference the data has not shown.
        """
        for box_branch, cls_branch, stride in zip(self.box_branches, self.cls_branches, self.strides):
            nn.init.constant_(box_branch[-1].bias, 1.0)
            anchors_per_class = self.num_classes * (prior_image_size / stride) ** 2
            prior = min(prior_objects_per_image / anchors_per_class, 0.5)
            nn.init.constant_(cls_branch[-1].bias, math.log(prior / (1 - prior)))

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """Raw per-level maps (B, 4 * reg_max + num_classes, H_i, W_i): box DFL logits first, then class logits."""
        return [torch.cat((box(x), cls(x)), dim=1)
                for x, box, cls in zip(features, self.box_branches, self.cls_branches)]

    def anchors(self, outputs: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Anchor points (A, 2) in grid units and strides (A, 1) for these feature shapes, cached per shape."""
        shapes = tuple((o.shape[2], o.shape[3]) for o in outputs)
        key = (shapes, outputs[0].device, outputs[0].dtype)
        if key not in self._anchor_cache:
            if len(self._anchor_cache) > 32:  # multi-scale training sees a bounded set of sizes; stay bounded
                self._anchor_cache.clear()
            self._anchor_cache[key] = anchor_grid(shapes, self.strides, outputs[0].device, outputs[0].dtype)
        return self._anchor_cache[key]

    def decode(self, outputs: list[Tensor]) -> Tensor:
        """Raw maps -> (B, 4 + num_classes, A): cx, cy, w, h in input pixels, then class probabilities."""
        batch = outputs[0].shape[0]
        flat = torch.cat([o.reshape(batch, 4 * self.reg_max + self.num_classes, -1) for o in outputs], dim=2)
        box_logits, cls_logits = flat.split((4 * self.reg_max, self.num_classes), dim=1)
        points, strides = self.anchors(outputs)
        distances = dfl_expectation(box_logits.transpose(1, 2), self.bins)  # (B, A, 4), grid units
        boxes = xyxy_to_cxcywh(distances_to_boxes(points, distances)) * strides
        return torch.cat((boxes.transpose(1, 2), cls_logits.sigmoid()), dim=1)


def dfl_expectation(box_logits: Tensor, bins: Tensor) -> Tensor:
    """(..., 4 * reg_max) DFL logits -> (..., 4) expected distances (left, top, right, bottom) in bin units."""
    reg_max = bins.numel()
    probabilities = box_logits.reshape(*box_logits.shape[:-1], 4, reg_max).softmax(dim=-1)
    return probabilities @ bins.to(probabilities.device, probabilities.dtype)


FusedT = TypeVar("FusedT", bound="FusableModel")


class FusableModel(nn.Module):
    """What the detector and the classifier share: conv+BN folding for inference, and refusing to train after it."""

    fused: bool = False

    def fuse(self: FusedT) -> FusedT:
        """Fold every BatchNorm into its conv: same outputs in eval mode, fewer ops. Inference only."""
        for module in self.modules():
            if isinstance(module, ConvBNAct):
                module.fuse()
        self.fused = True
        return self.eval()

    def train(self: FusedT, mode: bool = True) -> FusedT:
        if mode and self.fused:
            raise RuntimeError("a fused model has no BatchNorm left to train; build or load an unfused one")
        return super().train(mode)


class Detector(FusableModel):
    """The whole network. `Detector(ModelConfig(scale="s", num_classes=7))`."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config = config or ModelConfig()
        if config.scale not in SCALES:
            raise ValueError(f"unknown model scale {config.scale!r}; choose one of {', '.join(SCALES)}")
        if config.num_classes < 1:
            raise ValueError("num_classes must be at least 1")
        if config.reg_max < 2:
            raise ValueError("reg_max must be at least 2 (DFL spreads each target over two neighbouring bins)")
        depth_multiple, width_multiple, max_channels = SCALES[config.scale]
        widths = {c: scaled_width(c, width_multiple, max_channels) for c in (64, 128, 256, 512, 1024)}
        self.strides = P2_STRIDES if config.p2 else STRIDES
        self.backbone = Backbone(config.in_channels, widths, depth_multiple)
        self.neck: nn.Module = NeckP2(widths, depth_multiple) if config.p2 else Neck(widths, depth_multiple)
        levels = (128, 256, 512, 1024) if config.p2 else (256, 512, 1024)
        self.head = DetectHead([widths[c] for c in levels], config.num_classes, config.reg_max, self.strides,
                               config.cls_hidden)
        self.head.init_biases(config.prior_objects_per_image, config.prior_image_size)
        self.fused = False

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def reg_max(self) -> int:
        return self.config.reg_max

    def forward(self, images: Tensor) -> list[Tensor] | Tensor:
        """images (B, 3, H, W), H and W multiples of 32. Train: raw per-level maps; eval: decoded predictions."""
        features = self.backbone.with_p2(images) if self.config.p2 else self.backbone(images)
        outputs = self.head(self.neck(*features))
        return outputs if self.training else self.head.decode(outputs)

    def decode(self, outputs: list[Tensor]) -> Tensor:
        """Decode raw maps from a train-mode forward (e.g. to get a validation loss and predictions at once)."""
        return self.head.decode(outputs)



def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or not (the number model summaries usually quote)."""
    return sum(p.numel() for p in model.parameters())


def count_gflops(model: nn.Module, image_size: int | tuple[int, int] = 640) -> float:
    """GFLOPs (2 x multiply-accumulates, the convention of YOLO model tables) of one forward at image_size.

    The forward runs on the meta device (shapes only, no arithmetic), so this is instant even for scale x.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    in_channels = getattr(getattr(model, "config", None), "in_channels", 3)
    meta_state = {name: torch.empty_like(t, device="meta")
                  for name, t in [*model.named_parameters(), *model.named_buffers()]}
    images = torch.empty(1, in_channels, height, width, device="meta")
    was_training = model.training
    model.eval()  # eval BatchNorm: no running-stat updates, the inference graph is what gets counted
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            torch.func.functional_call(model, meta_state, (images,))
    finally:
        model.train(was_training)
        anchor_cache = getattr(getattr(model, "head", None), "_anchor_cache", None)  # the classifier has none
        if anchor_cache is not None:
            anchor_cache.clear()  # drop meta-device anchors
    return counter.get_total_flops() / 1e9


def model_summary(model: Detector, image_size: int = 640) -> str:
    """One line for logs: scale, classes, parameters and GFLOPs at image_size."""
    config = model.config
    name = f"{config.scale}-p2 (strides 4-32)" if config.p2 else config.scale
    return (f"YOLO detector scale {name}: {config.num_classes} classes, {count_parameters(model):,} "
            f"parameters, {count_gflops(model, image_size):.1f} GFLOPs at {image_size}x{image_size}")
