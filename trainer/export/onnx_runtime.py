"""Running an exported ONNX file through onnxruntime behind the interface of our models in eval mode.

- `OnnxDetector(images) -> (B, 4 + nc, anchors)` like `Detector.eval()(images)`, so trainer.model.inference's
  predict / evaluate_model (and with them `doctor val` and `doctor predict`) run it unchanged. A file exported
  with --nms ends in final boxes; its rows come back as that same layout, one column per box with only its
  class's score set, so our NMS (same IoU, our --conf, our per-image max_det) keeps them as they are: greedy NMS
  run again on its own survivors at the same IoU threshold suppresses nothing. What the export dropped (scores
  under its baked-in conf, boxes its IoU suppressed) stays dropped: `nms_thresholds` says what was baked in.
- `OnnxClassifier(images) -> (B, classes)` log-probabilities: the file outputs probabilities, and what
  trainer.classify_loop.classify_scores applies to a model's output (softmax) gives them back unchanged.

Providers: CUDA and TensorRT where onnxruntime has them and the device asks for a GPU, the CPU provider always.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dataset_doctor.errors import DoctorError
from trainer.export.onnx_export import CLASSIFY_TASK, EXPORT_EXTRA_HINT

# doctor val measures mAP from scores down to 0.001; an --nms file that dropped scores above this misses enough
# of the precision-recall curve's tail to lower mAP visibly (the warning's threshold).
FAIR_MAP_CONF = 0.01


def require_onnxruntime() -> Any:
    """The onnxruntime module, or a one-line DoctorError naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise DoctorError(f"running an ONNX model needs the onnxruntime package: {EXPORT_EXTRA_HINT}") from None
    return onnxruntime


def providers_for(device: torch.device | str, available: list[str]) -> list[str]:
    """TensorRT, then CUDA where installed and a GPU is asked for; the CPU provider last, always."""
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if torch.device(device).type == "cuda" else []
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


def _session(path: Path, device: torch.device | str) -> tuple[Any, dict[str, str]]:
    """An onnxruntime session on one of our export files and its metadata; one-line errors otherwise."""
    runtime = require_onnxruntime()
    if not path.is_file():
        raise DoctorError("ONNX model not found", path)
    try:
        providers = providers_for(device, runtime.get_available_providers())
        session = runtime.InferenceSession(str(path), providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types for damaged or foreign files
        raise DoctorError(f"not a readable ONNX model ({str(error).strip().splitlines()[0][:200]})", path) from None
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    if metadata.get("producer") != "dataset-doctor":
        raise DoctorError("not an ONNX file exported by doctor export (no dataset-doctor metadata)", path)
    return session, metadata


class _OnnxModel(nn.Module):
    """What both tasks share: the session, the metadata, and running a batch (one image at a time when static)."""

    task = "detect"

    def __init__(self, path: str | Path, device: torch.device | str = "cpu"):
        super().__init__()
        self.path = Path(path)
        self.session, self.metadata = _session(self.path, device)
        task = self.metadata.get("task", "detect")
        if task != self.task:
            raise DoctorError(f"this ONNX file is a {task} model, not a {self.task} one", self.path)
        self.names: list[str] = [str(name) for name in json.loads(self.metadata["names"])]
        self.imgsz = int(json.loads(self.metadata["imgsz"])[0])
        self.dynamic = json.loads(self.metadata["dynamic"])
        self.half = json.loads(self.metadata["half"])
        self.input_name = self.session.get_inputs()[0].name

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def _inputs(self, images: Tensor) -> np.ndarray:
        if not self.dynamic and tuple(images.shape[2:]) != (self.imgsz, self.imgsz):
            raise DoctorError(f"this ONNX file takes {self.imgsz}x{self.imgsz} images (static export), got "
                              f"{images.shape[3]}x{images.shape[2]}: pass --imgsz {self.imgsz}", self.path)
        return images.detach().float().cpu().numpy().astype(np.float16 if self.half else np.float32)

    def _run(self, array: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: array})[0]


class OnnxDetector(_OnnxModel):
    """An exported detector as a module: float images (B, 3, H, W) in [0, 1] -> decoded predictions."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu"):
        super().__init__(path, device)
        self.nms = bool(json.loads(self.metadata.get("nms", "false")))

    def nms_thresholds(self) -> tuple[float, float, int] | None:
        """(conf, iou, max_det) baked into an --nms file; None for a raw-head file."""
        if not self.nms:
            return None
        return (float(json.loads(self.metadata["conf"])), float(json.loads(self.metadata["iou"])),
                int(json.loads(self.metadata["max_det"])))

    def forward(self, images: Tensor) -> Tensor:
        array = self._inputs(images)
        if self.nms:
            return self._as_decoded(array).to(images.device)
        if self.dynamic:
            outputs = self._run(array)
        else:  # a static export takes batch 1
            outputs = np.concatenate([self._run(array[i:i + 1]) for i in range(len(array))])
        return torch.from_numpy(outputs.astype(np.float32)).to(images.device)

    def _as_decoded(self, array: np.ndarray) -> Tensor:
        """The file's final boxes (N, 7) [image, x1, y1, x2, y2, score, class] as (B, 4 + nc, K): per image one
        column per box (cx, cy, w, h, then zeros except its class's score), zero columns padding to K."""
        if self.dynamic:
            rows = self._run(array).astype(np.float32)
        else:
            parts = [self._run(array[i:i + 1]).astype(np.float32) for i in range(len(array))]
            for image, part in enumerate(parts):
                part[:, 0] = image
            rows = np.concatenate(parts) if parts else np.zeros((0, 7), np.float32)
        batch, classes = len(array), len(self.names)
        image = rows[:, 0].astype(np.int64)
        counts = np.bincount(image, minlength=batch)
        decoded = np.zeros((batch, 4 + classes, max(int(counts.max(initial=0)), 1)), np.float32)
        order = np.argsort(image, kind="stable")
        image, rows = image[order], rows[order]
        column = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        x1, y1, x2, y2 = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
        decoded[image, 0, column], decoded[image, 1, column] = (x1 + x2) / 2, (y1 + y2) / 2
        decoded[image, 2, column], decoded[image, 3, column] = x2 - x1, y2 - y1
        decoded[image, 4 + rows[:, 6].astype(np.int64), column] = rows[:, 5]
        return torch.from_numpy(decoded)


class OnnxClassifier(_OnnxModel):
    """An exported classifier as a module: images (B, 3, H, W) -> log-probabilities (B, classes)."""

    task = CLASSIFY_TASK

    def forward(self, images: Tensor) -> Tensor:
        array = self._inputs(images)
        if self.dynamic:
            outputs = self._run(array)
        else:
            outputs = np.concatenate([self._run(array[i:i + 1]) for i in range(len(array))])
        # log of the file's probabilities: softmax(log p) = p, so classify_scores' softmax returns them
        return torch.from_numpy(outputs.astype(np.float32)).clamp_min(1e-38).log().to(images.device)


def baked_nms_warnings(model: nn.Module, conf: float, iou: float, measuring_map: bool) -> list[str]:
    """One line per way an --nms export's baked-in thresholds differ from what the command asks for (nothing for
    any other model): it cannot return boxes its graph already dropped."""
    thresholds = model.nms_thresholds() if isinstance(model, OnnxDetector) else None
    if thresholds is None:
        return []
    baked_conf, baked_iou, _ = thresholds
    lines = []
    if measuring_map and baked_conf > max(conf, FAIR_MAP_CONF):
        lines.append(f"this --nms export keeps only scores above {baked_conf:g} (baked in at export): mAP misses "
                     f"the low-score tail and comes out lower than the model's; for a fair mAP export with "
                     f"--nms --conf 0.001")
    elif not measuring_map and baked_conf > conf:
        lines.append(f"this --nms export keeps only scores above {baked_conf:g} (baked in at export), not the "
                     f"--conf {conf:g} asked for")
    if baked_iou < iou:
        lines.append(f"this --nms export suppressed boxes overlapping above IoU {baked_iou:g} (baked in at "
                     f"export), not the --iou {iou:g} asked for")
    return lines


def is_onnx(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def onnx_task(path: str | Path) -> str | None:
    """The task in an .onnx file's metadata (detect or classify); None for any other path. Reads the metadata
    only (onnx's loader, no session), and leaves unreadable files to the loaders' one-line errors."""
    if not is_onnx(path) or not Path(path).is_file():
        return None
    try:
        import onnx
    except ImportError:  # onnxruntime alone installed: its session reads the metadata too
        try:
            return _session(Path(path), "cpu")[1].get("task", "detect")
        except DoctorError:
            return None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # a damaged file: the session's own message says what is wrong with it
        return None
    return {entry.key: entry.value for entry in proto.metadata_props}.get("task", "detect")


def load_detector(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, list[str]]:
    """One of our checkpoints (.pt) or an exported ONNX file (.onnx), with its class names."""
    if is_onnx(path):
        model = OnnxDetector(path, device)
        return model, model.names
    from trainer.setup import load_model_weights

    return load_model_weights(path, device)


def load_classifier_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, list[str], int]:
    """A classifier checkpoint (.pt) or an exported classifier (.onnx) in eval mode, its class names and the
    input size it was trained (or exported) at: what doctor val / predict's classification paths need."""
    if is_onnx(path):
        model = OnnxClassifier(path, device)
        return model, model.names, model.imgsz
    from trainer.classify_loop import load_classifier

    model, checkpoint = load_classifier(path, str(device))
    return model, list(checkpoint["names"]), int(checkpoint["config"]["imgsz"])
