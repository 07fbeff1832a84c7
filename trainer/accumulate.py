"""Nominal batch (`--nbs`): gradients summed over several batches before one optimizer step.

When memory limits the batch (a small GPU, a laptop), results should not depend on it. With `--nbs 64` and
`--batch 16` the loop backpropagates four batches and then steps once, so every step sees 64 images, as
Darknet's `subdivisions` and Ultralytics' `nbs` do. The loss is a sum over the batch's images (per-image mean
times batch size, trainer/model/loss.py), so four backward passes of 16 images add up to the gradient of one
pass of 64 (up to BatchNorm statistics and the loss's per-batch normaliser).

Weight decay is coupled to the step, not to the images: summed gradients grow with the images per step while
the decay term does not, so it is scaled by `batch * accumulate / nbs` (Ultralytics' rule); with an exact
multiple that factor is 1 and the decay per image stays what `--weight-decay` says.

An epoch's last, incomplete group of batches still steps (its gradients are never carried into the next
epoch), so every checkpoint is taken with no gradient pending and `--resume` continues exactly. A batch whose
loss is not finite clears the gradients gathered so far in its group (the loop's skip_bad_step). Distributed
runs all-reduce on every backward pass (correct; DDP's no_sync would save that traffic).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Accumulation:
    """How many batches make one optimizer step, and the weight decay that goes with it."""

    batch: int  # images per batch (all devices together)
    nbs: int  # nominal batch; 0: off, one step per batch

    @property
    def steps(self) -> int:
        """Batches per optimizer step: round(nbs / batch), at least 1 (1 when nbs is off)."""
        return max(round(self.nbs / self.batch), 1) if self.nbs > 0 else 1

    @property
    def effective_batch(self) -> int:
        return self.batch * self.steps

    def weight_decay(self, weight_decay: float) -> float:
        """The decay for steps of `effective_batch` images (unchanged when nbs is off)."""
        return weight_decay * self.effective_batch / self.nbs if self.nbs > 0 else weight_decay

    def steps_now(self, step: int, steps_in_epoch: int) -> bool:
        """Whether the optimizer steps after the 0-based batch `step` of an epoch of `steps_in_epoch` batches."""
        return (step + 1) % self.steps == 0 or step + 1 == steps_in_epoch

    def describe(self) -> str:
        if self.steps == 1:
            return f"effective batch {self.effective_batch}" + (f" (--nbs {self.nbs})" if self.nbs else "")
        return (f"effective batch {self.effective_batch} (batch {self.batch} x {self.steps} accumulated, "
                f"--nbs {self.nbs})")
