"""`doctor export WEIGHTS --format onnx`: the EMA weights, conv+bn fused, in eval mode, as one ONNX file.

The graph's input is `images` (B, 3, H, W) float32 RGB in [0, 1]. A detector takes it letterboxed to a square
imgsz side (what our evaluation loader feeds); its output is either

- `output0` (B, 4 + nc, anchors): the decoded head, cx, cy, w, h in input pixels then per-class probabilities,
  anchors = sum over strides 8, 16, 32 of (H / s) * (W / s) (8400 at 640), i.e. what
  trainer.model.nms.non_max_suppression takes; or, with `nms=True`,
- `detections` (N, 7): [image index in batch, x1, y1, x2, y2, score, class] in input pixels, from ONNX's
  NonMaxSuppression run per class (class-aware: a box suppresses only boxes of its own class), every class
  whose score passes the threshold making a candidate (as our evaluation's multi-label NMS). Rows come per
  image, per class, best first; at most max_det rows per image and class.

A classifier (task classify) takes it resized and centre-cropped to imgsz (what our classification evaluation
feeds, trainer/data/classify_dataset.py) and outputs `probabilities` (B, classes): the softmax of the logits,
each row summing to 1, classes in the order of the metadata's names.

The file's metadata (onnx metadata_props, all strings; JSON where structured) says what a consumer needs:
names, imgsz, stride, scale, version, data, task, nms, dynamic, half, layout and, with nms, conf / iou / max_det.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dataset_doctor.atomic import atomic_write
from dataset_doctor.errors import DoctorError
from trainer.checkpoint import load_checkpoint
from trainer.model.detector import STRIDES, Detector, ModelConfig

EXPORT_EXTRA_HINT = "pip install 'dataset-doctor[export]'"
RAW_LAYOUT = "output0 (batch, 4 + classes, anchors): cx, cy, w, h in input pixels, then class probabilities"
NMS_LAYOUT = "detections (N, 7): image index, x1, y1, x2, y2, score, class; input pixels"
CLASSIFY_LAYOUT = "probabilities (batch, classes): softmax of the logits, classes in the order of names"
CLASSIFY_TASK = "classify"  # trainer.classify_loop.TASK, the checkpoint's "task" (not imported: torch-free path)


def require_onnx() -> Any:
    """The onnx module, or a one-line DoctorError naming the extra that installs it."""
    try:
        import onnx
    except ImportError:
        raise DoctorError(f"ONNX export needs the onnx package: {EXPORT_EXTRA_HINT}") from None
    return onnx


@dataclass
class ExportOptions:
    imgsz: int = 0  # input side; 0: 640 for a detector, the training size for a classifier
    dynamic: bool = False  # batch, height and width free (multiples of 32) instead of (1, 3, imgsz, imgsz)
    half: bool = False  # float16 weights and input (CUDA only: onnxruntime's CPU provider lacks fp16 kernels)
    opset: int = 17
    nms: bool = False  # append class-aware NonMaxSuppression: final boxes instead of the raw head
    conf: float = 0.25  # with nms: a class score must exceed this
    iou: float = 0.7  # with nms: IoU above which a box of the same class is suppressed
    max_det: int = 300  # with nms: boxes kept per image and class
    simplify: bool = True  # run onnxslim when it is installed (nothing happens when it is not)


class _OnnxNms(torch.autograd.Function):
    """ONNX NonMaxSuppression as one node: a stand-in forward for tracing, the real op in the graph."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_det: Tensor, iou: Tensor, conf: Tensor) -> Tensor:
        # Shape and dtype only: the traced graph gets the symbolic below, never this value.
        return torch.zeros((0, 3), dtype=torch.int64, device=boxes.device)

    @staticmethod
    def symbolic(g, boxes, scores, max_det, iou, conf):
        return g.op("NonMaxSuppression", boxes, scores, max_det, iou, conf, center_point_box_i=1)


class _Exportable(nn.Module):
    """The fused detector, optionally followed by class-aware NMS on its decoded output."""

    def __init__(self, model: Detector, options: ExportOptions):
        super().__init__()
        self.model, self.options = model, options
        # Buffers, not torch.tensor() calls in forward: the trace takes them as the NMS node's constant inputs.
        self.register_buffer("max_det", torch.tensor([options.max_det], dtype=torch.int64))
        self.register_buffer("iou", torch.tensor([options.iou], dtype=torch.float32))
        self.register_buffer("conf", torch.tensor([options.conf], dtype=torch.float32))

    def forward(self, images: Tensor) -> Tensor:
        decoded = self.model(images)  # (B, 4 + nc, A)
        if not self.options.nms:
            return decoded
        boxes = decoded[:, :4].transpose(1, 2).float()  # (B, A, 4) cx, cy, w, h
        scores = decoded[:, 4:].float()  # (B, nc, A)
        selected = _OnnxNms.apply(boxes, scores, self.max_det, self.iou, self.conf)
        image, cls, anchor = selected[:, 0], selected[:, 1], selected[:, 2]
        chosen = boxes[image, anchor]
        corners = torch.cat([chosen[:, :2] - chosen[:, 2:] / 2, chosen[:, :2] + chosen[:, 2:] / 2], dim=1)
        score = scores[image, cls, anchor]
        return torch.cat([image[:, None].float(), corners, score[:, None], cls[:, None].float()], dim=1)


class _ExportableClassifier(nn.Module):
    """The fused classifier followed by the softmax: a consumer gets probabilities, not logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images).float().softmax(dim=1)


def is_classifier(checkpoint: dict[str, Any]) -> bool:
    return checkpoint.get("task") == CLASSIFY_TASK


def classifier_for_export(checkpoint: dict[str, Any], weights: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """A classifier checkpoint's model, fused and in eval mode, plus its metadata fields. Its "model" entry is
    already the EMA weights when the run kept an EMA (trainer/classify_loop.py saves what evaluation saw)."""
    from trainer.config import ClassifyConfig
    from trainer.model.classifier import Classifier, ClassifierConfig

    try:
        config = ClassifyConfig(**checkpoint["config"])
        names = [str(name) for name in checkpoint["names"]]
        model = Classifier(ClassifierConfig(config.model, len(names), dropout=config.dropout))
        model.load_state_dict(checkpoint["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise DoctorError(f"checkpoint model state does not load ({type(error).__name__})", weights) from None
    info = {"names": names, "scale": config.model, "data": Path(str(config.data)).name if config.data else "",
            "ema": checkpoint.get("ema") is not None, "imgsz": int(config.imgsz)}
    return model.eval().fuse(), info


def model_for_export(weights: str | Path, checkpoint: dict[str, Any] | None = None
                     ) -> tuple[Detector, dict[str, Any]]:
    """The checkpoint's EMA model (its raw weights when it has no EMA), fused and in eval mode, plus what the
    metadata needs from the checkpoint (names, scale, the training data's name)."""
    checkpoint = load_checkpoint(weights) if checkpoint is None else checkpoint
    try:
        config = ModelConfig(**checkpoint["model_config"])
        model = Detector(config)
        ema = checkpoint.get("ema")
        model.load_state_dict(ema["module"] if ema is not None else checkpoint["model"])
        names = [str(name) for name in checkpoint["names"]]
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise DoctorError(f"checkpoint model state does not load ({type(error).__name__})", weights) from None
    settings = checkpoint.get("settings")
    train = settings.get("train") if isinstance(settings, dict) else None
    data = train.get("data") if isinstance(train, dict) else None  # the data.yaml path; its folder names it
    info = {"names": names, "scale": config.scale, "data": Path(str(data)).parent.name if data else "",
            "ema": ema is not None}
    return model.eval().fuse(), info


def export_onnx(weights: str | Path, out: str | Path, options: ExportOptions,
                device: torch.device | str = "cpu") -> dict[str, str]:
    """Write the ONNX file atomically at `out`; returns the metadata written into it. A classifier checkpoint
    exports the same way (task classify, output probabilities); options.imgsz 0 means its training size."""
    onnx = require_onnx()
    device = torch.device(device)
    checkpoint = load_checkpoint(weights)
    classify = is_classifier(checkpoint)
    if classify and options.nms:
        raise DoctorError("--nms is for detectors: a classifier has no boxes to suppress; export without --nms",
                          weights)
    if options.half and device.type != "cuda":
        raise DoctorError("--half exports float16 for a GPU: it needs --device cuda (onnxruntime's CPU provider "
                          "has no float16 convolutions); export float32 for CPU")
    if classify:
        model, info = classifier_for_export(checkpoint, weights)
        imgsz = options.imgsz or info["imgsz"]
        if imgsz < max(STRIDES):
            raise DoctorError(f"--imgsz must be at least {max(STRIDES)} for a classifier, got {imgsz}")
    else:
        imgsz = options.imgsz or 640
        if imgsz % max(STRIDES) or imgsz <= 0:
            raise DoctorError(f"--imgsz must be a positive multiple of {max(STRIDES)}, got {imgsz}")
        model, info = model_for_export(weights, checkpoint)
    model = model.to(device)
    dtype = torch.float16 if options.half else torch.float32
    if options.half:
        model = model.half()
    wrapper = (_ExportableClassifier(model) if classify else _Exportable(model, options)).eval()
    example = torch.zeros((1, 3, imgsz, imgsz), dtype=dtype, device=device)
    output_name = "probabilities" if classify else "detections" if options.nms else "output0"
    dynamic_axes = None
    if options.dynamic:
        output_axes = {0: "batch"} if classify else {0: "detections"} if options.nms else {0: "batch", 2: "anchors"}
        dynamic_axes = {"images": {0: "batch", 2: "height", 3: "width"}, output_name: output_axes}
    metadata = {
        "producer": "dataset-doctor", "version": _project_version(), "task": CLASSIFY_TASK if classify else "detect",
        "names": json.dumps(info["names"]), "imgsz": json.dumps([imgsz, imgsz]),
        "stride": json.dumps(max(STRIDES)), "strides": json.dumps(list(STRIDES)), "scale": info["scale"],
        "data": info["data"], "ema": json.dumps(info["ema"]), "fused": "true", "nms": json.dumps(options.nms),
        "dynamic": json.dumps(options.dynamic), "half": json.dumps(options.half),
        "layout": CLASSIFY_LAYOUT if classify else NMS_LAYOUT if options.nms else RAW_LAYOUT,
    }
    if classify:  # one feature map, pooled: no anchor strides
        del metadata["strides"]
    if options.nms:
        metadata.update(conf=json.dumps(options.conf), iou=json.dumps(options.iou), max_det=json.dumps(options.max_det))

    def write(temporary: Path) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter warns about advanced indexing with negative indices; ours are never negative.
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (example,), str(temporary), input_names=["images"],
                              output_names=[output_name], opset_version=options.opset, dynamic_axes=dynamic_axes,
                              do_constant_folding=True, dynamo=False)
        proto = onnx.load(str(temporary))
        if options.simplify:
            proto = _slimmed(proto)
        del proto.metadata_props[:]
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, str(temporary))

    atomic_write(Path(out), write)
    return metadata


def _slimmed(proto: Any) -> Any:
    """onnxslim's simplification when it is installed; the graph unchanged otherwise."""
    try:
        import onnxslim
    except ImportError:
        return proto
    return onnxslim.slim(proto)


def _project_version() -> str:
    from dataset_doctor import __version__

    return __version__
