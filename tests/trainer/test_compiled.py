"""`doctor train --compile` (trainer/compiled.py): the training step runs compiled, the run directory is what an
uncompiled run writes (the same state_dict keys, no `_orig_mod.` prefix), and a compiler failure is one line.

The runs here compile with dynamo's aot_eager backend: the same graph capture of forward and backward as
inductor, without its C++ code generation, which took over two minutes for the n model at imgsz 64 on the
2-core test machine. Inductor itself is measured by the one-off run in bench/README.md.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from dataset_doctor.cli import app
from dataset_doctor.sample.generate import write_sample_dataset
from dataset_doctor.sample.spec import SampleSpec
from tests.tiny_dataset import write_class_tree
from trainer import compiled
from trainer import run_dir as files
from trainer.checkpoint import load_checkpoint
from trainer.config import TrainConfig, TrainSettings
from trainer.data.config import AugmentConfig, DataConfig
from trainer.loop import train


@pytest.fixture(scope="module")
def small_yaml(tmp_path_factory) -> Path:
    return write_sample_dataset(tmp_path_factory.mktemp("small") / "digits", seed=3,
                                spec=SampleSpec(train_images=20, val_images=8, min_side=64, max_side=128,
                                                min_object_px=8, max_object_px=40, inject_defects=False))


@pytest.fixture
def fresh_dynamo() -> Iterator[None]:
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def settings(data: Path, project: Path, name: str, **changes) -> TrainSettings:
    config = TrainConfig(data=str(data), epochs=1, batch=8, save_batches=0, tensorboard=False, project=str(project),
                         name=name, device="cpu", **changes)
    return TrainSettings(config, DataConfig(imgsz=64, workers=0), AugmentConfig())


def test_compiled_training_saves_what_an_uncompiled_run_saves(small_yaml, tmp_path, monkeypatch, fresh_dynamo):
    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")
    real_compile, calls = torch.compile, []

    def counting_compile(model, **options):  # torch.compile, counting the calls of what it returns
        function = real_compile(model, **options)

        def call(images):
            calls.append(tuple(images.shape))
            return function(images)
        return call

    monkeypatch.setattr(torch, "compile", counting_compile)
    plain = train(settings(small_yaml, tmp_path, "plain"), progress=False)
    assert calls == []
    output = io.StringIO()
    fast = train(settings(small_yaml, tmp_path, "fast", compile=True), progress=False,
                 console=Console(file=output, width=200))
    assert "--compile: the first training step took" in output.getvalue()
    # every training batch went through the compiled forward; the last one is smaller (a recompile, fine)
    assert len(calls) == files.read_args(fast)["resolved"]["iterations_per_epoch"] >= 2
    assert calls[-1][0] < calls[0][0] == 8
    assert files.read_args(fast)["train"]["compile"] is True  # args.yaml: --resume compiles again

    for checkpoint in (files.BEST_CHECKPOINT, files.LAST_CHECKPOINT):
        with_compile, without = load_checkpoint(fast / checkpoint), load_checkpoint(plain / checkpoint)
        assert list(with_compile["model"]) == list(without["model"])
        assert list(with_compile["ema"]["module"]) == list(without["ema"]["module"])
        assert not any("_orig_mod" in key for key in [*with_compile["model"], *with_compile["ema"]["module"]])
        assert with_compile["ema"]["updates"] == without["ema"]["updates"] > 0  # the EMA tracked the trained model
    (fast_row,), (plain_row,) = files.read_results(fast), files.read_results(plain)
    for column in ("box_loss", "cls_loss", "dfl_loss"):
        assert math.isfinite(fast_row[column]) and fast_row[column] > 0
        assert fast_row[column] == pytest.approx(plain_row[column], rel=1e-3)  # the same step, compiled


def test_a_compiler_failure_is_one_line_naming_the_option(small_yaml, tmp_path, monkeypatch, fresh_dynamo):
    def failing_compile(model, **options):
        def call(images):
            raise RuntimeError("InductorError: CppCompileError: C++ compile error\nmany more lines")
        return call

    monkeypatch.setattr(torch, "compile", failing_compile)
    result = CliRunner().invoke(app, ["train", str(small_yaml), "--compile", "--epochs", "1", "--batch", "8",
                                      "--imgsz", "64", "--workers", "0", "--device", "cpu", "--no-tensorboard",
                                      "--no-live-report", "--project", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert "--compile could not compile the model (RuntimeError: InductorError: CppCompileError" in result.output
    assert "run without --compile" in result.output
    assert "Traceback" not in result.output and "many more lines" not in result.output


def test_the_classifier_refuses_compile(tmp_path):
    root = write_class_tree(tmp_path / "pets", {"train/cat/a.png": (32, 32), "train/dog/b.png": (32, 32),
                                                "val/cat/c.png": (32, 32), "val/dog/d.png": (32, 32)})
    result = CliRunner().invoke(app, ["train", str(root), "--compile", "--project", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "--compile is a detector option" in result.output, result.output
    assert not (tmp_path / "runs").exists()
