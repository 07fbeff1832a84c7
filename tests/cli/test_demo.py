"""`doctor demo`: the whole story end to end (tiny settings), and the rules for its output folder."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dataset_doctor.cli import app
from dataset_doctor.cli.demo import _fresh_output_folder
from dataset_doctor.errors import DoctorError


def test_the_whole_story_runs_and_writes_both_reports(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--epochs", "1", "--imgsz", "64", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for step in ("1/4", "2/4", "3/4", "4/4"):
        assert step in result.output
    audit = json.loads((out / "reports/audit.json").read_text())
    assert audit["summary"]["error"] > 0  # the sample's deliberate defects were found
    assert (out / "reports/audit.html").stat().st_size > 1_000_000  # plotly embedded: a real page
    rebalanced = json.loads((out / "rebalanced/rebalance.json").read_text())
    assert rebalanced
    run = out / "runs/demo"
    assert (run / "weights/best.pt").exists() and (run / "report.html").exists()
    assert "audit.html" in (run / "report.html").read_text()  # the training report links the audit report
    assert str(out / "reports/audit.html") in result.output and str(run / "report.html") in result.output


def test_output_folder_is_replaced_only_when_an_earlier_demo_wrote_it(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(DoctorError, match="not written by doctor demo"):
        _fresh_output_folder(mine)
    assert (mine / "thesis.tex").read_text() == "precious"

    earlier = _fresh_output_folder(tmp_path / "demo")
    (earlier / "old-run.txt").write_text("x")
    again = _fresh_output_folder(tmp_path / "demo")
    assert again == earlier and sorted(p.name for p in again.iterdir()) == [".doctor-demo"]


def test_the_eta_before_training_counts_the_images_and_measures_a_step(tmp_path, capsys):
    """Issue 22: the demo says how long training will take before it starts, from a step measured here."""
    from dataset_doctor.cli.demo import _print_eta
    from trainer.throughput import measure_train_images_per_s

    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir()
    val.mkdir()
    for index in range(7):
        (train / f"{index}.jpg").write_bytes(b"x")
    (train / "notes.txt").write_text("not an image")
    (val / "v.png").write_bytes(b"x")
    _print_eta(train, val, epochs=2, imgsz=64, device="cpu")
    printed = " ".join(capsys.readouterr().out.split())
    assert "ETA: training about" in printed and "2 epochs x 7 images at" in printed, printed
    rate = measure_train_images_per_s("n", 3, 64, batch=2, steps=1)
    assert 0 < rate < float("inf")
