"""`doctor train --device 0,1` spawns one process per GPU: rank 0 still writes TensorBoard events, and its
live-report calls come back to the launching process, which rewrites report.html after every evaluation.

Without GPUs the same spawn path runs two CPU workers on gloo (trainer/launch.py takes None for "a CPU worker"):
the device choice is patched to ask for two workers; everything else is the real command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import reports.training_report as training_report
import trainer.launch as launch
from dataset_doctor.cli import app
from dataset_doctor.sample.generate import write_sample_dataset
from dataset_doctor.sample.spec import SampleSpec
from trainer import run_dir as files
from trainer.devices import DeviceChoice

pytest.importorskip("tensorboard", reason="the monitor extra (tensorboard) is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

runner = CliRunner()


def test_spawned_run_writes_the_live_report_and_tensorboard(tmp_path, monkeypatch, isolated_cache) -> None:
    data = write_sample_dataset(tmp_path / "digits", seed=1, spec=SampleSpec(
        train_images=8, val_images=4, min_side=64, max_side=96, max_object_px=40, inject_defects=False))
    monkeypatch.setattr(launch, "choose_device",
                        lambda *_: DeviceChoice(torch.device("cpu"), (None, None), None))  # two CPU workers
    written: list[tuple[str, int]] = []
    real = training_report.write_live_report

    def capturing(run_dir, progress, console=None):  # runs in this process, fed by rank 0 through the queue
        path = real(run_dir, progress, console)
        written.append((path.read_text(encoding="utf-8"), len(files.read_results(run_dir))))
        return path

    monkeypatch.setattr(training_report, "write_live_report", capturing)
    result = runner.invoke(app, ["train", str(data), "--epochs", "2", "--batch", "4", "--imgsz", "64",
                                 "--workers", "0", "--device", "cpu", "--project", str(tmp_path / "runs"),
                                 "--threads", "1", "--tensorboard"])
    assert result.exit_code == 0, result.output
    run_dir = Path(re.search(r"results in (\S+)", result.output.replace("\n", "")).group(1))
    assert (run_dir / files.DISTRIBUTED_FILE).is_file()  # it really ran as two processes
    flat = result.output.replace("\n", "")
    assert "live report" in flat and str(run_dir / "report.html") in flat
    assert len(written) == 2  # one per evaluation, in order, each after its results.csv row
    for epoch, (text, rows) in enumerate(written, start=1):
        assert "training in progress" in text and f"epoch {epoch} of 2" in text and 'http-equiv="refresh"' in text
        assert rows >= epoch
    final = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "training in progress" not in final
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [s.step for s in events.Scalars("metrics/val_map50")] == [1, 2]
