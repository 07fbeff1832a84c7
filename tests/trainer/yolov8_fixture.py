"""Test helper: a state_dict in the key layout of a YOLOv8 detection model, written from one of our Detectors.

The renaming is spelled out here, independently of trainer/model/yolov8_layout.py, from YOLOv8's published
layer list (0-9 backbone, 10-21 neck, 22 Detect) and its module names (conv/bn, cv1/cv2/m.<i>, cv2/cv3/dfl), so
a test that loads this file proves our mapping is the inverse of this one.
"""

from __future__ import annotations

import torch

from trainer.model.detector import Detector

# our module path -> layer number in the yolov8 yaml
_LAYER_OF = {"backbone.stem": 0, "backbone.stage2.0": 1, "backbone.stage2.1": 2, "backbone.stage3.0": 3,
             "backbone.stage3.1": 4, "backbone.stage4.0": 5, "backbone.stage4.1": 6, "backbone.stage5.0": 7,
             "backbone.stage5.1": 8, "backbone.stage5.2": 9, "neck.top_down4": 12, "neck.top_down3": 15,
             "neck.down3": 16, "neck.bottom_up4": 18, "neck.down4": 19, "neck.bottom_up5": 21, "head": 22}
_PARTS = {"conv_in": "cv1", "conv_out": "cv2", "conv1": "cv1", "conv2": "cv2", "blocks": "m",
          "box_branches": "cv2", "cls_branches": "cv3"}


def ultralytics_key(key: str) -> str:
    for prefix, layer in sorted(_LAYER_OF.items(), key=lambda item: -len(item[0])):
        if key.startswith(prefix + "."):
            rest = [_PARTS.get(part, part) for part in key[len(prefix) + 1:].split(".")]
            return f"model.{layer}." + ".".join(rest)
    raise KeyError(key)


def yolov8_state_dict(model: Detector) -> dict[str, torch.Tensor]:
    """Our model's tensors under YOLOv8's keys, plus Detect's fixed DFL bins."""
    state = {ultralytics_key(key): value.clone() for key, value in model.state_dict().items()}
    state["model.22.dfl.conv.weight"] = torch.arange(model.reg_max, dtype=torch.float32).view(1, -1, 1, 1)
    return state
