"""A tiny YOLO dataset written without fixtures, for table rows whose `build(tmp_path)` makes its own input."""

from __future__ import annotations

from pathlib import Path

import cv2
import torch

from tests.conftest import noise_image
from trainer import run_dir as files
from trainer.checkpoint import save_checkpoint
from trainer.config import TrainConfig, TrainSettings
from trainer.data.config import AugmentConfig, DataConfig
from trainer.model.detector import Detector, ModelConfig


def write_tiny_dataset(root: Path, labels: dict[str, str], names: tuple[str, ...] = ("a", "b")) -> Path:
    """images/SPLIT/NAME.png (distinct noise) with labels/SPLIT/NAME.txt for {"SPLIT/NAME": label text}."""
    for key, text in labels.items():
        split, stem = key.split("/")
        image = root / "images" / split / f"{stem}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(cv2.imencode(".png", noise_image(key))[1].tobytes())
        label = root / "labels" / split / f"{stem}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_bytes(text.encode())
    (root / "data.yaml").write_text(f"train: images/train\nval: images/val\nnames: {list(names)}\n")
    return root / "data.yaml"


def write_run_with_checkpoint(run: Path, data_yaml: Path, model_config: ModelConfig,
                              model_state: dict[str, torch.Tensor] | None = None, drop: tuple[str, ...] = ()) -> Path:
    """A run directory as a killed `doctor train` leaves it (args.yaml, weights/last.pt after epoch 0), with a
    checkpoint of `model_config` (or the given state); `drop` names checkpoint keys to leave out."""
    settings = TrainSettings(TrainConfig(data=str(data_yaml), epochs=3, batch=2, device="cpu", save_batches=0,
                                         model="n"), DataConfig(imgsz=64, workers=0), AugmentConfig())
    files.write_args(run, settings.to_dict())
    state = {"model": model_state if model_state is not None else Detector(model_config).state_dict(),
             "ema": None, "optimizer": {}, "scaler": {}, "epoch": 0, "best_fitness": 0.0, "best_epoch": 0,
             "stale_evaluations": 0, "elapsed": 1.0, "model_config": vars(model_config).copy(),
             "names": [str(i) for i in range(model_config.num_classes)], "settings": settings.to_dict(),
             "rng": {}, "results_row": {}}
    save_checkpoint(run / files.LAST_CHECKPOINT, {key: value for key, value in state.items() if key not in drop})
    return run
