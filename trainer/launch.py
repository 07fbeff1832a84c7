"""Starting a training run: in this process, or (several GPUs) one process per GPU via torch.distributed."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from trainer.train_config import TrainSettings


def launch_training(settings: TrainSettings | None, resume: Path | None = None,
                    console: Console | None = None) -> Path:
    """Train and return the run directory (resume: `settings` come from the run's args.yaml)."""
    from trainer.loop import train

    return train(settings, resume=resume, console=console)
