"""What a checkpoint of ours learnt from: its data.yaml and train images, read from the run's args.yaml (or the
checkpoint's own copy of the settings).

A model predicting the images it was trained on has memorised their label errors: its predictions agree with a
wrong label instead of flagging it. `doctor audit --model` uses this to say when its train predictions are
in-sample (and that `doctor crossval` gives out-of-sample ones).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dataset_doctor.dataset.datayaml import list_split_image_files, load_data_yaml
from dataset_doctor.errors import DoctorError
from trainer import run_dir as files


@dataclass(frozen=True)
class TrainedOn:
    data: str  # the data.yaml the run trained on, resolved
    images: frozenset[str] | None  # the resolved paths of its train images; None when that data.yaml is unreadable


def trained_on(weights: str | Path) -> TrainedOn | None:
    """The training data of a checkpoint: from args.yaml of its run directory (RUN/weights/best.pt), else from the
    settings saved in the checkpoint; None when neither records a data.yaml (an export, a foreign state)."""
    weights = Path(weights)
    data = None
    run = weights.parent.parent
    if weights.parent.name == files.WEIGHTS_DIR and (run / files.ARGS_FILE).is_file():
        try:  # resolved.dataset is absolute; train.data is as typed, relative to where the run was started
            args = files.read_args(run)
            data = (args.get("resolved") or {}).get("dataset") or (args.get("train") or {}).get("data")
        except (DoctorError, AttributeError):
            data = None
    if not data and weights.suffix.lower() == ".pt":
        from trainer.checkpoint import load_checkpoint

        try:
            data = ((load_checkpoint(weights).get("settings") or {}).get("train") or {}).get("data")
        except (DoctorError, AttributeError):
            data = None
    if not data or not isinstance(data, str):
        return None
    resolved = os.path.realpath(Path(data).expanduser())
    try:
        config = load_data_yaml(resolved)
        images = frozenset(os.path.realpath(path) for path in list_split_image_files(config, "train"))
    except DoctorError:
        images = None
    return TrainedOn(resolved, images)
