"""Learning-rate and momentum as pure functions of the training step, so `--resume` continues them exactly.

Warmup (Goyal et al. 2017, "Accurate, Large Minibatch SGD"): over the first `warmup_iterations` steps the
weight and BatchNorm groups rise linearly from 0 to their scheduled rate, the bias group falls from
`warmup_bias_lr` to it (a large bias rate early lets the detection head's priors settle quickly), and SGD
momentum rises from `warmup_momentum`. After that the rate follows a cosine (Loshchilov & Hutter 2017, SGDR
without restarts) or linear decay from lr0 to lr0 * lrf at the last epoch, stepped once per epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Schedule:
    lr0: float  # initial learning rate
    lrf: float  # final learning rate as a fraction of lr0
    epochs: int
    iterations_per_epoch: int
    warmup_epochs: float = 3.0
    warmup_min_iterations: int = 100  # short runs still get a warmup of at least this many steps
    warmup_bias_lr: float = 0.1
    warmup_momentum: float = 0.8
    momentum: float = 0.937
    cosine: bool = True

    @property
    def warmup_iterations(self) -> int:
        total = self.epochs * self.iterations_per_epoch
        warmup = max(round(self.warmup_epochs * self.iterations_per_epoch), self.warmup_min_iterations)
        return min(warmup, max(total - 1, 0)) if self.warmup_epochs > 0 else 0

    def epoch_factor(self, epoch: int) -> float:
        """Multiplier of lr0 for a 0-based epoch: 1 at the start, lrf at the end."""
        progress = epoch / max(self.epochs - 1, 1)
        if self.cosine:
            return self.lrf + (1 - self.lrf) * (1 + math.cos(math.pi * progress)) / 2
        return 1 - (1 - self.lrf) * progress

    def values(self, epoch: int, iteration: int) -> tuple[list[float], float]:
        """([lr of the weight, batchnorm, bias groups], momentum) at a 0-based epoch and global iteration."""
        target = self.lr0 * self.epoch_factor(epoch)
        warmup = self.warmup_iterations
        if iteration >= warmup:
            return [target, target, target], self.momentum
        fraction = iteration / warmup
        rising = float(np.interp(fraction, [0, 1], [0.0, target]))
        bias = float(np.interp(fraction, [0, 1], [self.warmup_bias_lr, target]))
        momentum = float(np.interp(fraction, [0, 1], [self.warmup_momentum, self.momentum]))
        return [rising, rising, bias], momentum

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int, iteration: int) -> float:
        """Set every group's rate (and SGD momentum / Adam beta1); returns the weight group's rate."""
        rates, momentum = self.values(epoch, iteration)
        for group, rate in zip(optimizer.param_groups, rates):
            group["lr"] = rate
            if "momentum" in group:
                group["momentum"] = momentum
            elif "betas" in group:
                group["betas"] = (momentum, group["betas"][1])
        return rates[0]
