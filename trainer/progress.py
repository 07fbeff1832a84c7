"""What a person watching a training run sees: a Rich progress line per epoch and a summary per evaluation."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class EpochProgress:
    """One progress bar per epoch: step, mean losses so far, learning rate, images/s, ETA."""

    def __init__(self, console: Console, epoch: int, epochs: int, steps: int, enabled: bool = True):
        self.enabled = enabled
        self._progress = Progress(
            TextColumn(f"[bold]{epoch + 1}/{epochs}[/]"), BarColumn(bar_width=12), MofNCompleteColumn(),
            TextColumn("{task.fields[losses]}"), TextColumn("lr {task.fields[lr]}"),
            TextColumn("{task.fields[speed]}"), TimeRemainingColumn(compact=True),
            console=console, disable=not enabled, transient=False)
        self._task = self._progress.add_task("train", total=steps, losses="", lr="", speed="")

    def __enter__(self) -> EpochProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.__exit__(*exc_info)

    def update(self, step: int, losses: tuple[float, float, float], lr: float, images_per_second: float) -> None:
        box, cls, dfl = losses
        self._progress.update(self._task, completed=step + 1, losses=f"box {box:.2f} cls {cls:.2f} dfl {dfl:.2f}",
                              lr=f"{lr:.1e}", speed=f"{images_per_second:.1f} img/s")
