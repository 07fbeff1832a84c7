"""`doctor crossval`: one real run (2 folds, 1 epoch at 64 px) checked for out-of-sample predictions of every
train image, the --predictions layout the audit reads, the in-sample note for a fold model, resume after a
kill (only the missing fold retrains), and one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from dataset_doctor.cli import app
from tests.cli.test_audit_predictions import assert_one_line_error, tree_hashes
from tests.tiny_dataset import write_dataset

runner = CliRunner()
TRAIN = {f"t{i}.jpg": f"{i % 2} 0.{2 + i % 6} 0.5 0.3 0.3\n" for i in range(8)}
VAL = {f"v{i}.jpg": f"{i % 2} 0.5 0.5 0.3 0.3\n" for i in range(2)}
FAST = ["--epochs", "1", "--imgsz", "64", "--batch", "4", "--workers", "0", "--threads", "1", "--device", "cpu",
        "--no-tensorboard"]


def doctor(*args: object):
    return runner.invoke(app, [str(arg) for arg in args])


@pytest.fixture(scope="module")
def crossvalidated(tmp_path_factory):
    """(data.yaml, OUT, the command's output, the dataset's file hashes before): one crossval for the module."""
    root = tmp_path_factory.mktemp("crossval")
    data = write_dataset(root / "data", {"train": TRAIN, "val": VAL}, names=["cat", "dog"])
    before = tree_hashes(data.parent)
    threads = torch.get_num_threads()
    try:
        result = doctor("crossval", data, "--folds", 2, "--out", root / "cv", "--no-report", *FAST)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return data, root / "cv", result.output, before


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line]


def test_every_train_image_is_predicted_once_by_a_model_that_never_saw_it(crossvalidated, tmp_path):
    data, out, output, before = crossvalidated
    train_images = sorted(str(path) for path in (data.parent / "images" / "train").iterdir())
    held = {fold: _lines(out / "folds" / f"fold-{fold}" / "holdout.txt") for fold in (1, 2)}
    assert sorted(held[1] + held[2]) == train_images and not set(held[1]) & set(held[2])
    for fold in (1, 2):
        fold_yaml = out / "folds" / f"fold-{fold}" / "data.yaml"
        trained = _lines(Path(yaml.safe_load(fold_yaml.read_text())["train"]))
        assert sorted(trained) == sorted(set(train_images) - set(held[fold]))  # the other fold, never its own
        args = yaml.safe_load((out / "runs" / f"fold-{fold}" / "args.yaml").read_text())
        assert args["resolved"]["dataset"] == str(fold_yaml)  # the run trained on exactly that list
    assert sorted(path.stem for path in (out / "predictions" / "train").iterdir()) == sorted(
        Path(path).stem for path in train_images)
    assert sorted(path.name for path in (out / "predictions" / "val").iterdir()) == ["v0.txt", "v1.txt"]
    # fold 1's files are what fold 1's own model predicts for its held-out images
    model = out / "runs" / "fold-1" / "weights" / "best.pt"
    assert doctor("predict", model, out / "folds" / "fold-1" / "holdout.txt", "--conf", 0.001, "--imgsz", 64,
                  "--device", "cpu", "--out", tmp_path / "again").exit_code == 0
    for path in held[1]:
        stem = Path(path).stem
        assert (tmp_path / "again" / "labels" / f"{stem}.txt").read_text() == \
            (out / "predictions" / "train" / f"{stem}.txt").read_text()
    said = " ".join(output.split())
    # the first estimate comes before any fold trains (a measured step), the refined one after fold 1's evaluation
    assert said.index("estimated total time: about") < said.index("fold 1/2: training on")
    assert "from a training step measured just now" in said
    assert said.index("measured on the first") < said.index("fold 1/2 trained in")
    assert "2 folds of 8 train images" in said and "fold 2/2 trained in" in said
    assert f"next: doctor audit {data} --predictions {out / 'predictions'}" in said
    assert tree_hashes(data.parent) == before  # the dataset is only read

    audited = doctor("audit", data, "--predictions", out / "predictions", "--json", tmp_path / "a.json", "--no-html")
    assert audited.exit_code in (0, 1), audited.output
    record = json.loads((tmp_path / "a.json").read_text())["label_audit"]
    assert record["splits"] == ["train", "val"] and record["files_read"] == len(TRAIN) + len(VAL)


def test_a_fold_model_is_in_sample_on_the_folds_it_trained_on(crossvalidated, tmp_path, monkeypatch):
    data, out, _, _ = crossvalidated
    monkeypatch.chdir(tmp_path)
    result = doctor("audit", data, "--model", out / "runs" / "fold-1" / "weights" / "best.pt", "--device", "cpu",
                    "--json", tmp_path / "a.json", "--no-html")
    assert result.exit_code in (0, 1), result.output
    trained = len(_lines(out / "folds" / "fold-1" / "train.txt"))
    record = json.loads((tmp_path / "a.json").read_text())["label_audit"]
    assert record["in_sample"] == {"train": {"images": trained, "of": len(TRAIN)}} and record["imgsz"] == 64
    assert f"trained on {trained} of {len(TRAIN)} train images" in " ".join(result.output.split())


def test_errors_are_one_line_and_touch_nothing(crossvalidated, tmp_path):
    data, out, _, _ = crossvalidated
    state = (out / "crossval.json").read_text()
    assert_one_line_error(doctor("crossval", data, "--folds", 2, "--out", out, "--no-report", *FAST[2:],
                                 "--epochs", 2), "other training options (epochs: 1, now 2)")
    assert_one_line_error(doctor("crossval", data, "--folds", 3, "--out", out, *FAST), "another --folds (2, now 3)")
    assert (out / "crossval.json").read_text() == state
    assert_one_line_error(doctor("crossval", data, "--out", tmp_path / "new", "--name", "x"), "crossval sets --name")
    assert_one_line_error(doctor("crossval", data, "--out", tmp_path / "new", "--bogus", 1), "No such option: --bogus")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine\n")
    assert_one_line_error(doctor("crossval", data, "--out", busy, *FAST), "not a crossval directory")
    assert_one_line_error(doctor("crossval", data, "--out", data.parent / "images" / "train" / "cv", *FAST),
                          "inside the dataset")
    no_val = write_dataset(tmp_path / "noval", {"train": TRAIN}, names=["cat", "dog"])
    assert_one_line_error(doctor("crossval", no_val, "--out", tmp_path / "cv", *FAST), "no 'val' split")
    assert not (tmp_path / "new").exists() and not (data.parent / "images" / "train" / "cv").exists()


def test_a_rerun_after_a_kill_retrains_only_the_unfinished_fold(crossvalidated):
    data, out, _, _ = crossvalidated
    kept = out / "runs" / "fold-1" / "weights" / "last.pt"
    kept_stamp = kept.stat().st_mtime_ns
    # fold 2 killed before its run finished: no run directory, no markers, none of its predictions
    held = _lines(out / "folds" / "fold-2" / "holdout.txt")
    shutil.rmtree(out / "runs" / "fold-2")
    for name in ("trained.json", "done.json"):
        (out / "folds" / "fold-2" / name).unlink()
    for path in held:
        (out / "predictions" / "train" / f"{Path(path).stem}.txt").unlink()
    # and one of fold 1's prediction files lost: predicted again, not retrained
    lost = out / "predictions" / "train" / f"{Path(_lines(out / 'folds' / 'fold-1' / 'holdout.txt')[0]).stem}.txt"
    lost.unlink()
    threads = torch.get_num_threads()
    try:
        result = doctor("crossval", data, "--folds", 2, "--out", out, "--no-report", *FAST)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "fold 1/2: trained, predicting its held-out images" in said and "fold 1/2 trained in" not in said
    assert "fold 2/2 trained in" in said and "estimated total time: about" in said
    assert "from the folds already trained" in said
    assert kept.stat().st_mtime_ns == kept_stamp  # fold 1 did not train again
    assert lost.is_file() and all((out / "predictions" / "train" / f"{Path(p).stem}.txt").is_file() for p in held)
    assert (out / "runs" / "fold-2" / "weights" / "best.pt").is_file()
    again = doctor("crossval", data, "--folds", 2, "--out", out, "--no-report", *FAST)
    assert again.exit_code == 0 and " ".join(again.output.split()).count("done, skipped") == 2
