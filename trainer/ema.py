"""Exponential moving average of model weights, evaluated and saved instead of the raw weights.

Averaging the weights over the last few thousand steps smooths out SGD noise and usually evaluates better
than the latest weights (Polyak & Juditsky 1992). Early in training the average would be dominated by the
random initialisation, so the decay ramps up with the number of updates, as TensorFlow's
ExponentialMovingAverage does with `num_updates`: decay_t = min(decay, (1 + t) / (10 + t)).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float = 0.9999, updates: int = 0):
        self.module = copy.deepcopy(unwrap(model)).eval()
        self.decay = decay
        self.updates = updates
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = self.current_decay()
        source = unwrap(model).state_dict()
        averaged, current = [], []
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                averaged.append(value)
                current.append(source[name].detach())
            else:  # BatchNorm's num_batches_tracked and other integer buffers are copied as they are
                value.copy_(source[name])
        # value * decay + source * (1 - decay), the same two elementwise ops per tensor as a loop of mul_ and
        # add_, in two multi-tensor calls: the per-tensor Python loop cost about as much as the arithmetic.
        if averaged:
            torch._foreach_mul_(averaged, decay)
            torch._foreach_add_(averaged, current, alpha=1 - decay)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates, self.decay = int(state["updates"]), float(state["decay"])


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
