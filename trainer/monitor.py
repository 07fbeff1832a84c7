"""Watching a run while it trains: TensorBoard event files in the run directory (`tensorboard --logdir runs`).

What is written, per epoch step = epoch number (1-based, as results.csv): every results.csv number under
`train/` (losses, lr, images/s) and `metrics/` (train and val mAP50 / mAP50-95, val precision / recall), and at
each evaluation the val per-class AP50 under `val_ap50/<class>`; once, the augmented batches of
train_batches/ as images and the class weights as a text table. Needs the optional `tensorboard` package
(`pip install 'dataset-doctor[monitor]'`): on by default when it is installed; asked for and missing, one line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dataset_doctor.errors import DoctorError
from trainer.evaluation import EvaluationResult

TENSORBOARD_DIR = "tensorboard"  # inside the run directory
MONITOR_EXTRA_HINT = "pip install 'dataset-doctor[monitor]'"
_METRIC_COLUMNS = ("train_map50", "train_map50_95", "val_map50", "val_map50_95", "val_precision", "val_recall")
_TRAIN_COLUMNS = ("box_loss", "cls_loss", "dfl_loss", "lr", "images_per_s")


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def wants_tensorboard(setting: bool | None) -> bool:
    """None (the default): on when tensorboard is installed. True without it: a one-line DoctorError."""
    if setting is None:
        return tensorboard_available()
    if setting and not tensorboard_available():
        raise DoctorError(f"--tensorboard needs the tensorboard package: {MONITOR_EXTRA_HINT} (or --no-tensorboard)")
    return setting


class TensorBoardLog:
    """A SummaryWriter over run_dir/tensorboard; every call flushes, so a live `tensorboard` sees each epoch."""

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR))

    def log_start(self, class_names: Sequence[str], weights: Sequence[float], method: str,
                  batch_images: Sequence[Path]) -> None:
        table = "| class | weight |\n|---|---|\n" + "".join(
            f"| {name} | {weight:.3f} |\n" for name, weight in zip(class_names, weights))
        self.writer.add_text("class_weights", f"method: {method}\n\n{table}", 0)
        for path in batch_images:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                self.writer.add_image(f"train_batches/{Path(path).stem}", cv2.cvtColor(image, cv2.COLOR_BGR2RGB),
                                      0, dataformats="HWC")
        self.writer.flush()

    def log_epoch(self, row: dict[str, Any], val: EvaluationResult | None) -> None:
        step = int(row["epoch"])
        for key in _TRAIN_COLUMNS:
            self._scalar(f"train/{key}", row.get(key), step)
        for key in _METRIC_COLUMNS:
            self._scalar(f"metrics/{key}", row.get(key), step)
        if val is not None:
            for name, ap50 in zip(val.class_names, np.asarray(val.ap50, dtype=np.float64)):
                self._scalar(f"val_ap50/{name}", float(ap50), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def _scalar(self, tag: str, value: Any, step: int) -> None:
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            self.writer.add_scalar(tag, float(value), step)
