"""A divergence warning before the NaN: a loss far above its own recent median means the step size is wrong.

A NaN loss stops a run (loop.skip_bad_step), but a run can diverge for a long time before that: with
`--lr0 1e4` the classification loss climbs to 6e16 and stays finite. Losses fall and wobble during healthy
training, within a factor of a few of their recent median; a jump of 100x is not noise. The watch keeps a
bounded window of each loss component and reports the first step whose loss exceeds `factor` times the median
of the steps before it, once per run.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

LOSS_NAMES = ("box", "cls", "dfl")  # the order of DetectionLoss's loss items


def exceeds_running_median(history: Sequence[float], value: float, factor: float, warmup: int) -> float | None:
    """The median `value` exceeds by more than `factor` times, or None (also before `warmup` past values).

    Zeros are left out of the median: a batch without boxes has a box loss of 0 and says nothing about scale.
    """
    past = [v for v in history if v > 0]
    if len(past) < warmup:
        return None
    median = statistics.median(past)
    return median if value > factor * median else None


@dataclass
class DivergenceWatch:
    """Running medians of the loss components; `update` returns a warning message the first time one diverges."""

    factor: float = 100.0  # a loss this many times its running median is divergence, not noise
    window: int = 50  # steps in the running median (bounded: memory and time per step stay constant)
    # Past steps needed before a warning. 1: with --lr0 1e4 the loss explodes on the second step, and a median of
    # steps that already diverged would hide it; healthy batches do not differ 100x, so one step is scale enough.
    warmup: int = 1
    warned: bool = False
    history: tuple[deque, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.history:
            self.history = tuple(deque(maxlen=self.window) for _ in LOSS_NAMES)

    def update(self, losses: Sequence[float], where: str) -> str | None:
        """Record one step's loss items; the warning (naming the loss, its value, the median and `where`) or None."""
        message = None
        for name, history, value in zip(LOSS_NAMES, self.history, losses):
            median = None if self.warned else exceeds_running_median(history, value, self.factor, self.warmup)
            if median is not None and message is None:
                message = (f"the {name} loss jumped to {value:.3g} at {where}, {value / median:,.0f}x its running "
                           f"median {median:.3g}: training is diverging; lower --lr0")
            history.append(value)
        if message is not None:
            self.warned = True
        return message
