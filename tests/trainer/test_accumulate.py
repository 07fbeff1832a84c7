"""--nbs: gradients accumulated over batches until the nominal batch, weight decay scaled to match."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
import torch
from rich.console import Console
from torch import nn

from tests.trainer.test_loop import quick_settings, tiny_yaml  # noqa: F401  (the module fixture)
from trainer import loop
from trainer import run_dir as files
from trainer.accumulate import Accumulation
from trainer.loop import optimizer_step, train
from trainer.optim import build_optimizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_steps_effective_batch_and_weight_decay():
    assert Accumulation(16, 0).steps == 1 and Accumulation(16, 0).weight_decay(5e-4) == 5e-4
    assert Accumulation(16, 64).steps == 4 and Accumulation(16, 64).effective_batch == 64
    assert Accumulation(16, 64).weight_decay(5e-4) == pytest.approx(5e-4)
    assert Accumulation(24, 64).steps == 3  # round(64 / 24): 72 images per step, decay scaled by 72 / 64
    assert Accumulation(24, 64).weight_decay(5e-4) == pytest.approx(5e-4 * 72 / 64)
    assert Accumulation(128, 64).steps == 1 and Accumulation(128, 64).weight_decay(1.0) == pytest.approx(2.0)
    # an epoch's last, incomplete group still steps
    assert [Accumulation(2, 6).steps_now(step, 7) for step in range(7)] == [False, False, True] * 2 + [True]
    assert "batch 16 x 4 accumulated" in Accumulation(16, 64).describe()


class Tiny(nn.Module):
    """A conv and a linear layer, no BatchNorm: gradients of a sum loss add up exactly over batches."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _train_steps(images: torch.Tensor, targets: torch.Tensor, batch: int, nbs: int, epochs: int) -> nn.Module:
    """The loop's step logic (backward every batch, optimizer_step when accumulation says) on Tiny."""
    torch.manual_seed(0)
    model = Tiny()
    accumulation = Accumulation(batch, nbs)
    optimizer = build_optimizer(model, "SGD", 0.05, 0.9, accumulation.weight_decay(0.01))
    run = SimpleNamespace(model=model, optimizer=optimizer, scaler=torch.amp.GradScaler("cuda", enabled=False),
                          settings=SimpleNamespace(train=SimpleNamespace(grad_clip=10.0)))
    batches = list(zip(images.split(batch), targets.split(batch)))
    for _ in range(epochs):
        for step, (x, y) in enumerate(batches):
            # the loss contract of DetectionLoss: per-image mean times the batch size
            loss = ((model(x) - y) ** 2).sum(dim=1).mean() * len(x)
            loss.backward()
            if accumulation.steps_now(step, len(batches)):
                optimizer_step(run)
    return model


def test_k_batches_of_b_equal_one_batch_of_k_times_b():
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(16, 3, 8, 8, generator=generator)
    targets = torch.randn(16, 2, generator=generator)
    whole = _train_steps(images, targets, batch=8, nbs=0, epochs=3)  # 2 steps of 8 images per epoch
    accumulated = _train_steps(images, targets, batch=2, nbs=8, epochs=3)  # 4 batches of 2 per step
    plain = _train_steps(images, targets, batch=2, nbs=0, epochs=3)  # a step per batch of 2: different
    for a, b in zip(whole.parameters(), accumulated.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert any((a - c).abs().max() > 1e-3 for a, c in zip(whole.parameters(), plain.parameters()))


def test_the_run_prints_the_effective_batch_and_steps_per_accumulated_group(tiny_yaml, tmp_path,  # noqa: F811
                                                                              monkeypatch):
    steps = []
    real_step = loop.optimizer_step
    monkeypatch.setattr(loop, "optimizer_step", lambda run: (steps.append(1), real_step(run)))
    output = io.StringIO()
    run_dir = train(quick_settings(tiny_yaml, tmp_path, epochs=1, batch=8, nbs=32, save_batches=0,
                                   weight_decay=0.01),
                    console=Console(file=output, width=200), progress=False)
    args = files.read_args(run_dir)["resolved"]
    batches = args["iterations_per_epoch"]
    assert args["accumulate"] == 4 and args["effective_batch"] == 32
    assert args["weight_decay"] == pytest.approx(0.01)
    assert len(steps) == -(-batches // 4)  # one step per 4 batches, the last group incomplete
    assert "effective batch 32 (batch 8 x 4 accumulated, --nbs 32)" in output.getvalue()
