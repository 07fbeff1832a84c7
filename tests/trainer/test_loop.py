"""The training loop end to end on CPU: it learns, it writes the run directory of design.md section 4, it resumes
exactly after a kill, and the class weights reach the loss."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from rich.console import Console
from typer.testing import CliRunner

from dataset_doctor.cli import app
from dataset_doctor.dataset.index import build_index
from dataset_doctor.errors import DoctorError
from dataset_doctor.sample.generate import write_sample_dataset
from dataset_doctor.sample.spec import SampleSpec
from dataset_doctor.weights import class_weights_for_index
from tests.trainer.killing import kill_after_epochs
from trainer import run_dir as files
from trainer.checkpoint import load_checkpoint
from trainer.config import TrainConfig, TrainSettings
from trainer.data.config import AugmentConfig, DataConfig
from trainer.loop import train
from trainer.setup import start_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory) -> Path:
    """The smallest sample (50 train / 20 val) with its deliberate defects."""
    return write_sample_dataset(tmp_path_factory.mktemp("tiny") / "digits", seed=1,
                                spec=SampleSpec(train_images=50, val_images=20))


def quick_settings(data: Path, project: Path, **train_changes) -> TrainSettings:
    config = TrainConfig(**{"data": str(data), "epochs": 2, "batch": 8, "project": str(project), "name": "exp",
                            "save_batches": 1, "seed": 0, **train_changes})
    return TrainSettings(config, DataConfig(imgsz=128, workers=0), AugmentConfig())


@pytest.fixture(scope="module")
def short_run(tiny_yaml, tmp_path_factory) -> Path:
    return train(quick_settings(tiny_yaml, tmp_path_factory.mktemp("runs")), progress=False)


def test_run_directory_holds_everything_design_md_lists(short_run, tiny_yaml):
    run = short_run
    for name in (files.ARGS_FILE, files.LAST_CHECKPOINT, files.BEST_CHECKPOINT, files.RESULTS_FILE,
                 files.PER_CLASS_FILE, files.CLASS_WEIGHTS_FILE, files.CONFUSION_FILE, files.PR_CURVES_FILE):
        assert (run / name).is_file(), name
    assert not (run / files.REPORT_FILE).exists()  # the caller writes the report: the trainer never imports reports
    args = files.read_args(run)
    assert args["train"]["epochs"] == 2 and args["data"]["imgsz"] == 128 and "mosaic" in args["augment"]
    assert args["resolved"]["dataset"] == str(tiny_yaml.resolve())

    results = files.read_results(run)
    assert [row["epoch"] for row in results] == [1, 2]
    for row in results:
        assert row["box_loss"] > 0 and row["lr"] > 0 and row["images_per_s"] > 0
        for column in ("train_map50", "train_map50_95", "val_map50", "val_map50_95"):
            assert row[column] is not None and 0 <= row[column] <= 1

    names = list(build_index(tiny_yaml, progress=False).names)
    per_class = files.read_per_class(run)
    assert sorted({row["split"] for row in per_class}) == ["train", "val"]
    for split in ("train", "val"):
        assert [row["class"] for row in per_class if row["split"] == split] == names

    weights = json.loads((run / files.CLASS_WEIGHTS_FILE).read_text())
    expected = class_weights_for_index(build_index(tiny_yaml, progress=False))
    assert weights["method"] == "inverse" and weights["weights"] == pytest.approx(expected.weights)

    confusion = (run / files.CONFUSION_FILE).read_text().splitlines()
    assert len(confusion) == len(names) + 2 and confusion[0].endswith(",background")
    curves = json.loads((run / files.PR_CURVES_FILE).read_text())
    assert len(curves["recall"]) == 101
    predictions = list((run / files.PREDICTIONS_DIR / "val").glob("*.txt"))
    assert len(predictions) >= 15  # every readable val image gets a (possibly empty) file
    assert list((run / files.TRAIN_BATCHES_DIR).glob("*.jpg"))


def test_checkpoints_load_with_weights_only_and_hold_the_resume_state(short_run):
    state = torch.load(short_run / files.LAST_CHECKPOINT, weights_only=True)
    assert state["epoch"] == 1 and state["optimizer"]["param_groups"]
    assert state["ema"]["updates"] > 0 and state["rng"]["torch"].dtype == torch.uint8
    assert {"model", "ema", "optimizer", "scaler", "best_fitness", "settings", "names", "model_config"} <= set(state)


def test_a_tiny_run_overfits_eight_images(sample_yaml, tmp_path):
    """Train and evaluate on the same 8 images (objects at least 12 px at 224): train mAP50 must reach 0.9."""
    index = build_index(sample_yaml, progress=False)
    boxes = index.usable_boxes("train").merge(index.images[["image_id", "width", "height"]], on="image_id")
    scale = 224 / np.maximum(boxes["width"], boxes["height"])
    boxes["short_side"] = np.minimum(boxes["w"] * boxes["width"], boxes["h"] * boxes["height"]) * scale
    flagged = set(index.problems.loc[index.problems["severity"] != "info", "image"].dropna())
    smallest = boxes.groupby("image_id")["short_side"].min()
    chosen = [i for i in smallest[smallest >= 12].index if index.images.at[i, "image"] not in flagged][:8]
    assert len(chosen) == 8
    (tmp_path / "eight.txt").write_text("\n".join(index.images.loc[chosen, "path"]) + "\n")
    data = tmp_path / "eight.yaml"
    data.write_text(yaml.safe_dump({"path": str(index.root), "train": str(tmp_path / "eight.txt"),
                                    "val": str(tmp_path / "eight.txt"), "names": list(index.names)}))
    # Many small steps with a cosine decay: BatchNorm running statistics (momentum 0.03) need the weights to
    # settle before the end, which a handful of large steps never gives them.
    config = TrainConfig(data=str(data), epochs=80, batch=4, optimizer="AdamW", lr0=0.004, cos_lr=True, ema=False,
                         eval_every=80, save_batches=0, project=str(tmp_path / "runs"), patience=0)
    run = train(TrainSettings(config, DataConfig(imgsz=224, workers=0), AugmentConfig.off()), progress=False)
    final = files.read_results(run)[-1]
    assert final["train_map50"] >= 0.9, final


def test_resume_after_a_kill_continues_exactly(tiny_yaml, tmp_path, isolated_cache):
    arguments = ["train", str(tiny_yaml), "--epochs", "3", "--batch", "8", "--imgsz", "128", "--workers", "0",
                 "--device", "cpu", "--project", str(tmp_path)]
    runner = CliRunner()
    reference = runner.invoke(app, [*arguments, "--name", "whole"])
    assert reference.exit_code == 0, reference.output

    env = {**os.environ, "DOCTOR_CACHE_DIR": str(isolated_cache), "PYTHONPATH": str(REPO)}
    killed = tmp_path / "killed"
    kill_after_epochs([sys.executable, "-m", "dataset_doctor", *arguments, "--name", "killed"],
                      killed / files.RESULTS_FILE, epochs=1, env=env)
    assert load_checkpoint(killed / files.LAST_CHECKPOINT)["epoch"] in (0, 1)
    # A checkpoint write killed halfway leaves its temporary (issue 16 item 10): the resumed run removes it.
    half_written = subprocess.run([sys.executable, "-c", (
        "import os, signal\nfrom pathlib import Path\nfrom dataset_doctor.atomic import atomic_write\n"
        "def write(temporary):\n    temporary.write_bytes(b'half a checkpoint')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        f"atomic_write(Path({str(killed / files.BEST_CHECKPOINT)!r}), write)")], env=env, timeout=120)
    assert half_written.returncode == -signal.SIGKILL
    [temporary] = (killed / files.WEIGHTS_DIR).glob(".best.pt.*.tmp")
    resumed = runner.invoke(app, ["train", "--resume", str(killed)])
    assert resumed.exit_code == 0, resumed.output
    assert not temporary.exists() and "a temporary file left by an interrupted write" in resumed.output
    # `doctor train` writes the report of every finished run, resumed ones included
    assert (tmp_path / "whole" / files.REPORT_FILE).is_file() and (killed / files.REPORT_FILE).is_file()
    assert "training report:" in reference.output and "training report:" in resumed.output

    whole, again = files.read_results(tmp_path / "whole"), files.read_results(killed)
    assert [row["epoch"] for row in again] == [1, 2, 3]
    for expected, actual in zip(whole, again):
        assert actual["lr"] == pytest.approx(expected["lr"], rel=1e-6)  # the schedule continued
        for column in ("box_loss", "cls_loss", "dfl_loss", "val_map50_95", "train_map50_95"):
            assert actual[column] == pytest.approx(expected[column], rel=1e-3, abs=1e-6), column
    final_whole = load_checkpoint(tmp_path / "whole" / files.LAST_CHECKPOINT)["model"]
    final_again = load_checkpoint(killed / files.LAST_CHECKPOINT)["model"]
    for name, tensor in final_whole.items():
        assert torch.allclose(tensor.float(), final_again[name].float(), rtol=1e-3, atol=1e-4), name


def test_class_weights_change_the_classification_loss_end_to_end(tiny_yaml, tmp_path):
    losses = {}
    for source in ("auto", "none"):
        run = start_run(quick_settings(tiny_yaml, tmp_path, class_weights=source, name=source, save_batches=0))
        torch.manual_seed(0)
        batch = next(iter(run.train_loader))
        torch.manual_seed(0)
        with torch.no_grad():
            run.model.train()
            losses[source] = run.loss(run.model(batch.images), batch.targets)[1]
        assert run.class_weights.method == ("inverse" if source == "auto" else "none")
    assert losses["auto"][0] == pytest.approx(losses["none"][0])  # box term untouched
    assert losses["auto"][2] == pytest.approx(losses["none"][2])  # dfl term untouched
    assert abs(losses["auto"][1] - losses["none"][1]) > 1e-3 * losses["none"][1]


def test_weights_file_and_its_mismatches(tiny_yaml, tmp_path):
    names = list(build_index(tiny_yaml, progress=False).names)
    good = tmp_path / "weights.json"
    good.write_text(json.dumps({"classes": names, "weights": [2.0] * len(names)}))
    run = start_run(quick_settings(tiny_yaml, tmp_path, class_weights=str(good), save_batches=0))
    assert run.loss.class_weights.tolist() == [2.0] * len(names)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"classes": names[::-1], "weights": [1.0] * len(names)}))
    with pytest.raises(DoctorError, match="not the dataset's"):
        start_run(quick_settings(tiny_yaml, tmp_path, class_weights=str(wrong), save_batches=0))


def test_non_finite_losses_skip_steps_then_stop_the_run(tiny_yaml, tmp_path, monkeypatch):
    from trainer.model.loss import DetectionLoss

    original = DetectionLoss.forward

    def poisoned(self, outputs, targets):
        total, items = original(self, outputs, targets)
        return total * float("nan"), items

    monkeypatch.setattr(DetectionLoss, "forward", poisoned)
    with pytest.raises(DoctorError, match="NaN or inf for 3 steps in a row"):
        train(quick_settings(tiny_yaml, tmp_path, max_bad_steps=3, save_batches=0), progress=False)


def test_a_diverging_loss_warns_once_and_is_kept_in_the_run(tiny_yaml, tmp_path, monkeypatch):
    from trainer.model.loss import DetectionLoss

    original, calls = DetectionLoss.forward, []

    def diverging(self, outputs, targets):  # the reported loss items explode from the 9th step on
        total, items = original(self, outputs, targets)
        calls.append(1)
        return total, items * (1e4 if len(calls) > 8 else 1.0)

    monkeypatch.setattr(DetectionLoss, "forward", diverging)
    output = io.StringIO()
    run = train(quick_settings(tiny_yaml, tmp_path, save_batches=0), console=Console(file=output, width=200),
                progress=False)
    warnings = files.read_json(run, files.WARNINGS_FILE)
    per_epoch = len(calls) // 2  # two epochs, no loss computed outside training steps
    where = "at epoch 1 step 9" if per_epoch >= 9 else f"at epoch 2 step {9 - per_epoch}"
    assert len(warnings) == 1 and "loss jumped to" in warnings[0] and where in warnings[0], warnings
    assert output.getvalue().count("training is diverging") == 1, output.getvalue()


def test_cli_names_runs_exp_exp2_and_refuses_bad_options(tiny_yaml, tmp_path):
    runner = CliRunner()
    arguments = ["train", str(tiny_yaml), "--epochs", "1", "--batch", "8", "--imgsz", "96", "--workers", "0",
                 "--project", str(tmp_path)]
    first = runner.invoke(app, arguments)
    second = runner.invoke(app, arguments)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert (tmp_path / "exp" / files.BEST_CHECKPOINT).exists() and (tmp_path / "exp2" / files.BEST_CHECKPOINT).exists()
    assert "exp2" in second.output
    bad = runner.invoke(app, [*arguments, "--model", "q"])
    assert bad.exit_code == 2 and "--model must be one of" in bad.output
    gpu = runner.invoke(app, [*arguments, "--device", "3"])
    if not torch.cuda.is_available():
        assert gpu.exit_code == 2 and "use --device cpu" in gpu.output


def test_val_equals_predict_then_evaluate(short_run, tiny_yaml, tmp_path):
    """Three commands, one protocol: `doctor val` must report what `predict` + `evaluate` measure."""
    runner = CliRunner()
    best = str(short_run / files.BEST_CHECKPOINT)
    common = ["--imgsz", "128", "--device", "cpu"]
    val = runner.invoke(app, ["val", best, str(tiny_yaml), *common, "--json", str(tmp_path / "val.json")])
    assert val.exit_code == 0, val.output
    predicted = runner.invoke(app, ["predict", best, str(tiny_yaml), "--out", str(tmp_path / "pred"), "--conf",
                                    "0.001", "--save-images", *common])
    assert predicted.exit_code == 0, predicted.output
    assert len(list((tmp_path / "pred/images").glob("*.jpg"))) == len(list((tmp_path / "pred/labels").glob("*.txt")))
    evaluated = runner.invoke(app, ["evaluate", str(tiny_yaml), "--predictions", str(tmp_path / "pred/labels"),
                                    "--json", str(tmp_path / "evaluate.json")])
    assert evaluated.exit_code == 0, evaluated.output
    by_val = json.loads((tmp_path / "val.json").read_text())
    by_files = json.loads((tmp_path / "evaluate.json").read_text())
    assert by_val["map50_95"] == pytest.approx(by_files["map50_95"], abs=2e-3)  # 6-decimal txt round-off only
    assert by_val["map50"] == pytest.approx(by_files["map50"], abs=2e-3)
    busy = runner.invoke(app, ["predict", best, str(tiny_yaml), "--out", str(tmp_path / "pred")])
    assert busy.exit_code == 2 and "not empty" in busy.output


def test_val_and_predict_say_the_imgsz_rounding_on_the_console(short_run, tiny_yaml, tmp_path):
    """One warning channel: the rounding of --imgsz is printed like every other warning of the command."""
    runner = CliRunner()
    best = str(short_run / files.BEST_CHECKPOINT)
    for command in (["val", best, str(tiny_yaml)], ["predict", best, str(tiny_yaml), "--out", str(tmp_path / "p")]):
        result = runner.invoke(app, [*command, "--imgsz", "100", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        assert "warning: imgsz 100 is not a multiple of 32: using 128" in result.output, command


def test_val_at_a_larger_imgsz_than_training(short_run, tiny_yaml, tmp_path, monkeypatch):
    """The Darknet manual's "detect at higher resolution without retraining": trained at 128, evaluated at 256."""
    from trainer.data import dataset as dataset_module

    sizes = []
    real_build = dataset_module.build_dataset
    monkeypatch.setattr(dataset_module, "build_dataset",
                        lambda index, split, imgsz, *rest, **options: (sizes.append(imgsz),
                                                                       real_build(index, split, imgsz, *rest,
                                                                                  **options))[1])
    runner = CliRunner()
    best = str(short_run / files.BEST_CHECKPOINT)
    result = runner.invoke(app, ["val", best, str(tiny_yaml), "--imgsz", "256", "--device", "cpu", "--json",
                                 str(tmp_path / "val256.json")])
    assert result.exit_code == 0, result.output
    assert "the model was trained at --imgsz 128; evaluating at 256 (a larger input" in result.output
    assert sizes == [256]  # the val images were letterboxed to 256, not to the training size
    per_class = json.loads((tmp_path / "val256.json").read_text())["per_class"]
    assert [row["instances"] for row in per_class] == build_index(tiny_yaml, progress=False).instances("val").tolist()
    same = runner.invoke(app, ["val", best, str(tiny_yaml), "--imgsz", "128", "--device", "cpu"])
    assert same.exit_code == 0 and "trained at" not in same.output and sizes == [256, 128]
