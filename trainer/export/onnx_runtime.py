"""Running an exported ONNX file through onnxruntime behind the interface of our model in eval mode.

`OnnxDetector(images) -> (B, 4 + nc, anchors)` like `Detector.eval()(images)`, so trainer.model.inference's
predict / evaluate_model (and with them `doctor val` and `doctor predict`) run it unchanged. Providers: CUDA and
TensorRT where onnxruntime has them and the device asks for a GPU, the CPU provider always.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dataset_doctor.errors import DoctorError
from trainer.export.onnx_export import EXPORT_EXTRA_HINT


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


class OnnxDetector(nn.Module):
    """An exported raw-head ONNX file as a module: float images (B, 3, H, W) in [0, 1] -> decoded predictions."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu"):
        super().__init__()
        runtime = require_onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise DoctorError("ONNX model not found", self.path)
        try:
            self.session = runtime.InferenceSession(str(self.path),
                                                    providers=providers_for(device, runtime.get_available_providers()))
        except Exception as error:  # onnxruntime raises its own exception types for damaged or foreign files
            raise DoctorError(f"not a readable ONNX model ({str(error).strip().splitlines()[0][:200]})",
                              self.path) from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if self.metadata.get("producer") != "dataset-doctor":
            raise DoctorError("not an ONNX file exported by doctor export (no dataset-doctor metadata)", self.path)
        self.names: list[str] = [str(name) for name in json.loads(self.metadata["names"])]
        self.imgsz = int(json.loads(self.metadata["imgsz"])[0])
        self.dynamic = json.loads(self.metadata["dynamic"])
        self.half = json.loads(self.metadata["half"])
        if json.loads(self.metadata.get("nms", "false")):
            raise DoctorError("this ONNX file ends in NMS (exported with --nms): val and predict need the raw head; "
                              "export it again without --nms", self.path)
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, images: Tensor) -> Tensor:
        if not self.dynamic and tuple(images.shape[2:]) != (self.imgsz, self.imgsz):
            raise DoctorError(f"this ONNX file takes {self.imgsz}x{self.imgsz} images (static export), got "
                              f"{images.shape[3]}x{images.shape[2]}: pass --imgsz {self.imgsz}", self.path)
        array = images.detach().float().cpu().numpy().astype(np.float16 if self.half else np.float32)
        if self.dynamic:
            outputs = self.session.run(None, {self.input_name: array})[0]
        else:  # a static export takes batch 1
            outputs = np.concatenate([self.session.run(None, {self.input_name: array[i:i + 1]})[0]
                                      for i in range(len(array))])
        return torch.from_numpy(outputs.astype(np.float32)).to(images.device)


def is_onnx(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def load_detector(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, list[str]]:
    """One of our checkpoints (.pt) or an exported ONNX file (.onnx), with its class names."""
    if is_onnx(path):
        model = OnnxDetector(path, device)
        return model, model.names
    from trainer.setup import load_model_weights

    return load_model_weights(path, device)
