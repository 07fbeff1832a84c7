"""The correspondence between our Detector's modules and the key layout of a YOLOv8 detection state_dict.

YOLOv8's published architecture numbers its layers 0 .. 22 (backbone 0-9, neck 10-21, Detect 22); its state
dicts name tensors `model.<layer>.<submodule>...`: a conv block is `conv` + `bn`, a C2f is `cv1`, `cv2` and
bottlenecks `m.<i>` (each `cv1`, `cv2`), SPPF is `cv1`, `cv2`, and Detect holds per level `cv2.<level>` (box:
two conv blocks and a 1x1 conv) and `cv3.<level>` (class: the same), plus `dfl.conv.weight`, the fixed bin
values 0 .. reg_max - 1 that our head keeps as the non-saved buffer `bins`.

Our modules are the same blocks under other names; LAYERS lists, per layer number, our module (None for the
parameter-free upsample and concat layers). The mapping is structural: a renaming of module paths, then every
tensor's shape is checked. Nothing is guessed: a key of the file that maps to no tensor of ours, a tensor of
ours that no key fills, or a shape that differs is an error naming the key. Only the layout is used here (the
documented module names); no Ultralytics code.
"""

from __future__ import annotations

import re

import torch

from dataset_doctor.errors import DoctorError

# Layer number in YOLOv8's detection yaml -> our module path (None: no parameters).
LAYERS: tuple[str | None, ...] = (
    "backbone.stem", "backbone.stage2.0", "backbone.stage2.1", "backbone.stage3.0", "backbone.stage3.1",
    "backbone.stage4.0", "backbone.stage4.1", "backbone.stage5.0", "backbone.stage5.1", "backbone.stage5.2",
    None, None, "neck.top_down4", None, None, "neck.top_down3", "neck.down3", None, "neck.bottom_up4",
    "neck.down4", None, "neck.bottom_up5", "head",
)
BACKBONE_LAYERS = 10  # layers 0-9; the neck ends at 21, the head is 22
HEAD_LAYER = 22
DFL_KEY = f"model.{HEAD_LAYER}.dfl.conv.weight"

# Inside a layer: their submodule names -> ours (applied in order, on whole dot-separated path segments).
_INNER = (
    (re.compile(r"^m\.(\d+)\.cv1\."), r"blocks.\1.conv1."),  # C2f bottlenecks
    (re.compile(r"^m\.(\d+)\.cv2\."), r"blocks.\1.conv2."),
    (re.compile(r"^cv1\."), "conv_in."),  # C2f and SPPF
    (re.compile(r"^cv2\."), "conv_out."),
)
_HEAD = ((re.compile(r"^cv2\.(\d+)\."), r"box_branches.\1."), (re.compile(r"^cv3\.(\d+)\."), r"cls_branches.\1."))
_KEY = re.compile(r"^model\.(\d+)\.(.+)$")


def our_key(their_key: str) -> str | None:
    """Our state_dict key for one YOLOv8 key, or None when the layout has no place for it."""
    match = _KEY.match(their_key)
    if match is None:
        return None
    layer, rest = int(match.group(1)), match.group(2)
    if layer >= len(LAYERS) or LAYERS[layer] is None:
        return None
    rules = _HEAD if layer == HEAD_LAYER else _INNER
    for pattern, replacement in rules:
        if pattern.match(rest):
            rest = pattern.sub(replacement, rest, count=1)
            break
    else:
        if layer == HEAD_LAYER:
            return None
    return f"{LAYERS[layer]}.{rest}"


def their_key(our: str) -> str | None:
    """The inverse of our_key (what a test helper uses to write a file of their layout from our model)."""
    for layer, prefix in enumerate(LAYERS):
        if prefix is None or not our.startswith(prefix + "."):
            continue
        rest = our[len(prefix) + 1:]
        if layer == HEAD_LAYER:
            rest = re.sub(r"^box_branches\.(\d+)\.", r"cv2.\1.", rest)
            rest = re.sub(r"^cls_branches\.(\d+)\.", r"cv3.\1.", rest)
        else:
            rest = re.sub(r"^blocks\.(\d+)\.conv1\.", r"m.\1.cv1.", rest)
            rest = re.sub(r"^blocks\.(\d+)\.conv2\.", r"m.\1.cv2.", rest)
            rest = re.sub(r"^conv_in\.", "cv1.", rest)
            rest = re.sub(r"^conv_out\.", "cv2.", rest)
        return f"model.{layer}.{rest}"
    return None


def looks_like_yolov8(state: dict) -> bool:
    return any(isinstance(key, str) and key.startswith("model.0.") for key in state)


def describe_source(state: dict[str, torch.Tensor], source: str) -> dict[str, int]:
    """What model the file holds, read from its shapes: stem width, first C2f's repeats, classes, class width."""
    def shape(key: str) -> tuple[int, ...]:
        if key not in state or not isinstance(state[key], torch.Tensor):
            raise DoctorError(f"not a YOLOv8 detection state_dict: no tensor {key}", source)
        return tuple(state[key].shape)

    repeats = {int(m.group(1)) for key in state if (m := re.match(r"^model\.2\.m\.(\d+)\.", str(key)))}
    return {"stem_width": shape("model.0.conv.weight")[0], "c2f_repeats": len(repeats),
            "num_classes": shape(f"model.{HEAD_LAYER}.cv3.0.2.weight")[0],
            "cls_hidden": shape(f"model.{HEAD_LAYER}.cv3.0.0.conv.weight")[0],
            "reg_max": shape(f"model.{HEAD_LAYER}.cv2.0.2.weight")[0] // 4}


def map_state_dict(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], source: str
                   ) -> dict[str, torch.Tensor]:
    """Their tensors under our keys, every one accounted for; any unmapped, missing or reshaped key: an error."""
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == DFL_KEY:  # fixed bins 0 .. reg_max - 1 in both models: check it is that, nothing to copy
            bins = torch.arange(value.numel(), dtype=torch.float32)
            if not isinstance(value, torch.Tensor) or not torch.equal(value.float().flatten(), bins):
                raise DoctorError(f"{key} is not the DFL bins 0 .. reg_max - 1: not a YOLOv8 Detect head", source)
            continue
        ours = our_key(str(key))
        if ours is None or ours not in own:
            raise DoctorError(f"tensor {key} of the weights file has no place in our model (not a YOLOv8 "
                              "detection layout, or another architecture)", source)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(own[ours].shape):
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise DoctorError(f"tensor {key} has shape {got}, our {ours} needs {tuple(own[ours].shape)}", source)
        mapped[ours] = value
    missing = [key for key in own if key not in mapped]
    if missing:
        raise DoctorError(f"the weights file lacks {their_key(missing[0]) or missing[0]} (our {missing[0]})"
                          + (f" and {len(missing) - 1} more tensors" if len(missing) > 1 else ""), source)
    return mapped
