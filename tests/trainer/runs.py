"""Run directories as `doctor train` leaves them, written without training (for resume and checkpoint tests)."""

from __future__ import annotations

from pathlib import Path

import torch

from trainer import run_dir as files
from trainer.checkpoint import save_checkpoint
from trainer.config import TrainConfig, TrainSettings
from trainer.data.config import AugmentConfig, DataConfig
from trainer.model.detector import Detector, ModelConfig


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
