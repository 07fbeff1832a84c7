"""`doctor audit data.yaml --model WEIGHTS`: one of our checkpoints predicts every split first (by `doctor
predict`'s code, trainer.predict), then the audit reads those predictions as it reads `--predictions DIR`.

Also what the model was trained on (trainer.provenance): predictions of a model's own train images are
in-sample (it has learnt their wrong labels and agrees with them), which the audit says in its summary and JSON.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dataset_doctor.dataset.datayaml import folders_read
from dataset_doctor.dataset.index import DatasetIndex
from dataset_doctor.errors import DoctorError

DEFAULT_IMGSZ = 640  # doctor predict's default, for a model that does not record its training size


def check_model(weights: Path) -> tuple[list[str] | None, int]:
    """Before any scan: a one-line error for a missing or foreign file or a classifier; else the checkpoint's
    class names (None for an .onnx export: known once loaded) and the size it was trained at (what it predicts
    best at; doctor predict's default when it does not say)."""
    from trainer.checkpoint import load_checkpoint

    if not weights.is_file():
        raise DoctorError("checkpoint not found", weights)
    if weights.suffix.lower() == ".onnx":
        return None, DEFAULT_IMGSZ
    checkpoint = load_checkpoint(weights)
    if checkpoint.get("task") == "classify":
        raise DoctorError("a classifier checkpoint: the label audit needs a detector", weights)
    try:
        imgsz = int(checkpoint["settings"]["data"]["imgsz"])
    except (KeyError, TypeError, ValueError):
        imgsz = DEFAULT_IMGSZ
    names = checkpoint.get("names")
    return ([str(name) for name in names] if isinstance(names, list) else None), imgsz


def check_classes(weights: Path, names: list[str] | None, index: DatasetIndex) -> None:
    if names is not None and names != list(index.names):
        raise DoctorError(f"the checkpoint's {len(names)} classes are not the dataset's {index.nc} "
                          "(different names or order)", weights)


def check_predictions_out(out: Path, index: DatasetIndex) -> Path:
    """--predictions-out: a new or empty directory outside the dataset (datasets are only read)."""
    out = Path(os.path.realpath(out.expanduser()))
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DoctorError("--predictions-out: the directory exists and is not empty", out)
    for folder in folders_read(index.config, with_root=False):
        if out == folder or out.is_relative_to(folder):
            raise DoctorError(f"--predictions-out would be written inside the dataset ({folder}): datasets are only "
                              "read", out)
    return out


def predict_for_audit(weights: Path, index: DatasetIndex, out: Path, *, imgsz: int, conf: float, device: str,
                      warn: Callable[[str], None]) -> None:
    """Every split of the dataset predicted into out/<split>/ (staged: a failed run leaves no half folder)."""
    from dataset_doctor.atomic import staged_directory
    from trainer.predict import predict_splits

    with staged_directory(out, "audit") as staging:
        names = predict_splits(weights, index.config.yaml_path, list(index.splits), staging, imgsz=imgsz, conf=conf,
                               device=device, warn=warn)
        check_classes(weights, list(names), index)  # an .onnx export: its names are known only now


def in_sample(weights: Path, index: DatasetIndex, splits: list[str]) -> dict[str, dict[str, int]]:
    """{split: {"images": trained on, "of": images}} for each audited split holding images the model was
    trained on (the same data.yaml's train split counts whole, even when its images cannot be listed)."""
    from trainer.provenance import trained_on

    trained = trained_on(weights)
    if trained is None:
        return {}
    same_yaml = trained.data == os.path.realpath(index.config.yaml_path)
    images = index.images[index.images["readable"].to_numpy()]
    found: dict[str, dict[str, int]] = {}
    for split in splits:
        paths = images.loc[(images["split"] == split).to_numpy(), "path"].drop_duplicates().tolist()
        if same_yaml and split == "train":
            count = len(paths)
        elif trained.images is not None:
            count = int(np.sum([os.path.realpath(path) in trained.images for path in paths]))
        else:
            count = 0
        if count:
            found[split] = {"images": count, "of": len(paths)}
    return found


def in_sample_message(counts: dict[str, dict[str, int]], data_yaml: Path) -> str | None:
    """The warning the summary prints and the JSON keeps; None when nothing is in-sample."""
    if not counts:
        return None
    parts = [f"{c['images']} of {c['of']} {split} images" for split, c in counts.items()]
    data = shlex.quote(str(data_yaml))
    return (f"in-sample predictions: the model was trained on {', '.join(parts)}, so it has learnt their label "
            "errors and agrees with them (their suspects are under-counted); for out-of-sample predictions run "
            f"doctor crossval {data} --folds 5 --out cv, then doctor audit {data} --predictions cv/predictions")
