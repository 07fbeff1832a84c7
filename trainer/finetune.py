"""Starting from trained weights: --weights (ours or a YOLOv8 state_dict), classes by name, freezing.

Progressive training (base classes on the large data, then the new classes on the small data) fails quietly
in two ways this module prevents. Classes are matched by *name*, never by id: a class in both the checkpoint
and the new data.yaml keeps its head rows (classification weights and bias of every level), a new class
starts fresh (default init, the prior-probability bias of Lin et al. 2017), and the run says which were kept,
added and dropped. And freezing freezes BatchNorm statistics too: frozen BN layers run in eval mode, since
frozen weights under drifting running means/variances are no longer the features that were learnt.

Freezing counts modules as YOLOv8's layer numbers do (trainer/model/yolov8_layout.py): `--freeze 10` (or
`backbone`) freezes layers 0-9, `neck` layers 0-21 (all but the head).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dataset_doctor.errors import DoctorError
from trainer.checkpoint import _load_failure_reason, load_checkpoint
from trainer.model import yolov8_layout
from trainer.model.detector import SCALES, Detector, ModelConfig, scaled_depth, scaled_width

FINETUNE_LR_FACTOR = 0.1  # --weights without --lr0: a tenth of the from-scratch rate, so learnt features survive
FINETUNE_WARMUP_EPOCHS = 1.0  # --weights without --warmup-epochs (from scratch: 3)
SCRATCH_WARMUP_EPOCHS = 3.0
FREEZE_PARTS = {"backbone": yolov8_layout.BACKBONE_LAYERS, "neck": yolov8_layout.HEAD_LAYER}


@dataclass
class ClassMapping:
    """Which of the source's classes the new model keeps (target id -> source id), adds and drops."""

    source_names: list[str]
    target_names: list[str]

    @property
    def kept(self) -> dict[int, int]:
        source = {name: i for i, name in enumerate(self.source_names)}
        return {i: source[name] for i, name in enumerate(self.target_names) if name in source}

    @property
    def added(self) -> list[str]:
        return [name for name in self.target_names if name not in set(self.source_names)]

    @property
    def dropped(self) -> list[str]:
        return [name for name in self.source_names if name not in set(self.target_names)]

    def summary(self) -> str:
        kept = [self.target_names[i] for i in self.kept]
        return (f"classes by name: kept {len(kept)} ({_names(kept)}), added {len(self.added)} "
                f"({_names(self.added)}), dropped {len(self.dropped)} ({_names(self.dropped)})")

    def to_json_dict(self) -> dict[str, list[str]]:
        return {"kept": [self.target_names[i] for i in self.kept], "added": self.added, "dropped": self.dropped}


def _names(names: list[str], limit: int = 12) -> str:
    if not names:
        return "none"
    return ", ".join(names[:limit]) + (f", ... {len(names) - limit} more" if len(names) > limit else "")


def _read_state_file(path: Path) -> Any:
    """Our checkpoints and plain state_dict files through weights_only=True; safetensors when installed."""
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise DoctorError("reading .safetensors needs the safetensors package: pip install safetensors",
                              path) from None
        try:
            return {"state_dict": load_file(str(path))}
        except Exception as error:  # safetensors raises its own types for damaged headers
            raise DoctorError(f"not a readable safetensors file ({str(error).splitlines()[0][:200]})", path) from None
    try:
        return load_checkpoint(path)
    except DoctorError:
        if not path.is_file():
            raise
    try:  # a plain state_dict file: tensors and plain data only, never the user's pickled classes
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign or damaged files
        raise DoctorError(f"--weights is not readable with weights_only=True ({_load_failure_reason(error)}); "
                          "export a plain state_dict (README, 'Start from YOLOv8 weights')", path) from None


def load_source(path: str | Path, names_file: str | Path | None = None) -> tuple[Detector, list[str], str]:
    """The model --weights names, its class names and what kind of file it was ("checkpoint" or "yolov8")."""
    from trainer.setup import load_model_weights

    path = Path(path)
    raw = _read_state_file(path)
    if isinstance(raw, dict) and "model_config" in raw:
        model, names = load_model_weights(path)
        return model, names, "checkpoint"
    state = raw.get("state_dict", raw.get("model")) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not yolov8_layout.looks_like_yolov8(state):
        raise DoctorError("--weights is neither one of our checkpoints nor a YOLOv8 detection state_dict "
                          "(a dict with 'state_dict': {'model.0.conv.weight': ...}; see README, 'Start from "
                          "YOLOv8 weights')", path)
    model = yolov8_model(state, str(path))
    names = _source_names(raw.get("names"), names_file, model.num_classes, path)
    return model, names, "yolov8"


def yolov8_model(state: dict[str, torch.Tensor], source: str) -> Detector:
    """Our Detector holding a YOLOv8 detection state_dict's tensors; the scale is read from the shapes."""
    shape = yolov8_layout.describe_source(state, source)
    for scale, (depth_multiple, width_multiple, max_channels) in SCALES.items():  # noqa: B007 (used below)
        if (scaled_width(64, width_multiple, max_channels) == shape["stem_width"]
                and scaled_depth(3, depth_multiple) == shape["c2f_repeats"]):
            break
    else:
        raise DoctorError(f"no model scale has a stem of {shape['stem_width']} channels and "
                          f"{shape['c2f_repeats']} bottlenecks in layer 2: not a YOLOv8 n/s/m/l/x detector", source)
    model = Detector(ModelConfig(scale=scale, num_classes=shape["num_classes"], reg_max=shape["reg_max"],
                                 cls_hidden=shape["cls_hidden"]))
    own = model.state_dict()
    model.load_state_dict(yolov8_layout.map_state_dict(state, own, source))
    return model.eval()


def _source_names(saved: Any, names_file: str | Path | None, count: int, path: Path) -> list[str]:
    """Class names of a YOLOv8 file: its own 'names' (list or {id: name}), else --weights-names (a data.yaml
    or a text file of one name per line)."""
    names: Any = saved
    if names_file is not None:
        names_file = Path(names_file)
        try:
            text = names_file.read_text(encoding="utf-8")
        except OSError as error:
            raise DoctorError(f"cannot read --weights-names ({error.strerror})", names_file) from None
        if names_file.suffix in (".yaml", ".yml"):
            import yaml

            names = (yaml.safe_load(text) or {}).get("names") if isinstance(yaml.safe_load(text), dict) else None
        else:
            names = [line.strip() for line in text.splitlines() if line.strip()]
    if isinstance(names, dict):
        names = [names[key] for key in sorted(names, key=int)] if all(str(k).isdigit() for k in names) else None
    if not isinstance(names, list | tuple):
        raise DoctorError("the weights file holds no class names: save them with it ({'state_dict': ..., 'names': "
                          "model.names}) or give --weights-names FILE", path)
    if len(names) != count:
        raise DoctorError(f"{len(names)} class names for a head of {count} classes", names_file or path)
    return [str(name) for name in names]


def transfer(source: Detector, source_names: list[str], target: Detector, target_names: list[str]
             ) -> ClassMapping:
    """Copy the source's tensors into the target; the class rows of the head's last convs by class name."""
    mapping = ClassMapping(list(source_names), list(target_names))
    own, theirs = target.state_dict(), source.state_dict()
    class_rows = {f"head.cls_branches.{level}.2.{kind}" for level in range(len(target.head.cls_branches))
                  for kind in ("weight", "bias")}
    differing = [key for key in own if key not in class_rows and (key not in theirs
                                                                   or theirs[key].shape != own[key].shape)]
    if differing:
        raise DoctorError(f"--weights holds another architecture: {differing[0]} is "
                          f"{tuple(theirs[differing[0]].shape) if differing[0] in theirs else 'missing'}, this "
                          f"model needs {tuple(own[differing[0]].shape)} (give the checkpoint's --model scale)")
    with torch.no_grad():
        for key, value in own.items():
            if key not in class_rows:
                value.copy_(theirs[key])
        kept = mapping.kept
        rows_to = torch.tensor(list(kept), dtype=torch.long)
        rows_from = torch.tensor(list(kept.values()), dtype=torch.long)
        for key in class_rows:
            if len(kept):
                own[key][rows_to] = theirs[key][rows_from].to(own[key].dtype)
    return mapping


def freeze_layer_count(spec: str | None) -> int:
    """--freeze N|backbone|neck -> how many of YOLOv8's numbered layers are frozen (0: none)."""
    if spec is None or spec == "":
        return 0
    if spec in FREEZE_PARTS:
        return FREEZE_PARTS[spec]
    if not spec.isdigit() or not 0 <= int(spec) <= yolov8_layout.HEAD_LAYER:
        raise DoctorError(f"--freeze takes a layer count 0-{yolov8_layout.HEAD_LAYER}, backbone or neck, got "
                          f"{spec!r}")
    return int(spec)


def frozen_prefixes(layers: int) -> list[str]:
    return [prefix for prefix in yolov8_layout.LAYERS[:layers] if prefix is not None]


def frozen_modules(model: nn.Module, layers: int) -> list[nn.Module]:
    return [model.get_submodule(prefix) for prefix in frozen_prefixes(layers)]


def set_frozen(model: nn.Module, layers: int) -> int:
    """Freeze the first `layers` layers (requires_grad off) and unfreeze the rest; returns frozen tensors.

    Frozen parameters stay in the optimizer: with no gradient, SGD and AdamW skip them (no momentum, no weight
    decay), so unfreezing later needs no new optimizer.
    """
    frozen = {id(p) for module in frozen_modules(model, layers) for p in module.parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) not in frozen)
    return len(frozen)


def keep_frozen_batchnorm_eval(model: nn.Module, layers: int) -> None:
    """After model.train(): frozen layers' BatchNorms back to eval, so their running statistics stay as learnt."""
    for module in frozen_modules(model, layers):
        for child in module.modules():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                child.eval()


def active_freeze(layers: int, freeze_epochs: int, epoch: int) -> int:
    """Layers frozen in this 0-based epoch: all of --freeze, until --freeze-epochs K (0: the whole run)."""
    return layers if freeze_epochs == 0 or epoch < freeze_epochs else 0
