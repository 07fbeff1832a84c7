"""`doctor crossval`: out-of-sample predictions for every train image, the honest input of the label audit.

A model predicting its own train images has memorised their label errors, so its predictions agree with a
wrong label instead of flagging it. Here train is cut into K folds (dataset_doctor.split.folds: stratified,
duplicate groups kept in one fold); the model of fold k trains on the other folds and predicts fold k. Val is
predicted by the fold model with the best val mAP50-95. The result is the `doctor audit --predictions` layout:

OUT/
    crossval.json               the dataset, K, seed, training settings and every image's fold (a rerun with
                                others is refused: its folds would not match the predictions already written)
    folds/val.txt               the val images (every fold model is chosen and scored on them)
    folds/fold-k/data.yaml      the fold's dataset: train.txt (the other folds' images) and val.txt, as .txt
                                lists of the user's files, which are never copied or touched
    folds/fold-k/holdout.txt    the images fold k's model predicts
    folds/fold-k/trained.json   written once the fold's run finished; done.json once its predictions are written
    runs/fold-k/                a normal `doctor train` run directory
    predictions/train/<stem>.txt, predictions/val/<stem>.txt   class cx cy w h confidence

A killed run resumes: a fold whose markers and prediction files exist is skipped, a finished run only predicts,
a run with weights/last.pt continues through the trainer's --resume, anything else trains afresh.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape

from dataset_doctor.atomic import atomic_write_text
from dataset_doctor.dataset.datayaml import folders_read, list_split_image_files, load_data_yaml
from dataset_doctor.dataset.index import build_index
from dataset_doctor.errors import DoctorError
from dataset_doctor.split.folds import FoldPlan, plan_folds
from trainer import run_dir as files
from trainer.config import TrainSettings
from trainer.devices import choose_device

STATE_FILE = "crossval.json"
FOLDS_DIR, RUNS_DIR, PREDICTIONS_DIR = "folds", "runs", "predictions"
TRAINED_MARK, DONE_MARK, VAL_MARK = "trained.json", "done.json", "val.json"
STATE_FORMAT = 1


@dataclass
class CrossvalResult:
    out: Path
    predictions: Path  # OUT/predictions: what `doctor audit --predictions` takes
    folds: int
    trained: list[int] = field(default_factory=list)  # folds (1-based) this call trained or resumed
    predicted: list[int] = field(default_factory=list)  # folds whose held-out images this call predicted
    best_fold: int = 0  # the fold whose model predicted val
    val_map50_95: dict[int, float | None] = field(default_factory=dict)  # best val mAP50-95 per fold


def run_crossval(data_yaml: str | Path, out: str | Path, folds: int, settings: TrainSettings, *, seed: int = 0,
                 conf: float = 0.001, console: Console | None = None,
                 after_training: Callable[[Path], None] | None = None) -> CrossvalResult:
    """Train the K fold models (or resume them) and write every train image's out-of-sample predictions and
    val's. `settings`: every fold's training settings (data, project and name are set per fold).
    after_training(run_dir): called after each fold's run finishes (doctor crossval writes its report.html)."""
    console = console or Console()
    config = load_data_yaml(data_yaml)
    for split in ("train", "val"):
        if split not in config.splits:
            raise DoctorError(f"no '{split}' split: crossval trains on folds of train and chooses each fold's "
                              "model on val", config.yaml_path)
    out = _check_out(Path(out), config)
    index = build_index(config, progress=console.is_terminal)
    plan = plan_folds(index, folds, seed)
    val_images = list_split_image_files(config, "val")
    _refuse_shared_stems(plan.images["path"].tolist(), "train", config.yaml_path)
    _refuse_shared_stems(val_images, "val", config.yaml_path)
    _check_state(out, _state(config.yaml_path, plan, settings))

    folds_dir, runs_dir, predictions = out / FOLDS_DIR, out / RUNS_DIR, out / PREDICTIONS_DIR
    val_list = folds_dir / "val.txt"
    atomic_write_text(val_list, "".join(f"{path}\n" for path in val_images))
    fold_yamls = [_write_fold(folds_dir / f"fold-{k + 1}", plan, k, list(index.names), val_list)
                  for k in range(folds)]
    result = CrossvalResult(out, predictions, folds)
    states = [_fold_state(folds_dir / f"fold-{k + 1}", runs_dir / f"fold-{k + 1}", plan.paths(k), predictions,
                          settings.train.epochs) for k in range(folds)]
    to_train = [k for k, state in enumerate(states) if state in ("resume", "fresh")]
    groups = int((plan.images["group"].value_counts() > 1).sum())
    console.print(f"cross-validation: {folds} folds of {len(plan.images)} train images ({groups} groups of "
                  f"duplicates kept whole), {settings.train.epochs} epochs each; val: {len(val_images)} images",
                  highlight=False, markup=False)
    for k, state in enumerate(states):
        if state != "fresh":
            console.print(f"  fold {k + 1}/{folds}: {_STATE_WORDS[state]}", highlight=False, markup=False)
    known = [_trained_seconds(folds_dir / f"fold-{k + 1}") for k in range(folds)]
    known = [seconds for seconds in known if seconds is not None]
    estimate = _Estimate(console, len(to_train))
    if to_train and known:
        estimate.say(sum(known) / len(known), "from the folds already trained")
    elif to_train:
        fold_images = max(len(plan.paths_outside(k)) for k in to_train)
        estimate.say(_measured_fold_seconds(settings, len(index.names), fold_images, len(val_images)),
                     "from a training step measured just now; refined after the first evaluation", final=False)

    started = time.perf_counter()
    for k in range(folds):
        fold_dir, run = folds_dir / f"fold-{k + 1}", runs_dir / f"fold-{k + 1}"
        held = plan.paths(k)
        if states[k] == "done":
            continue
        if states[k] in ("resume", "fresh"):
            console.print(f"[bold]fold {k + 1}/{folds}[/]: training on {len(plan.paths_outside(k))} images, "
                          f"{len(held)} held out" + (" (resuming)" if states[k] == "resume" else ""),
                          highlight=False)
            fold_started = time.perf_counter()
            _train_fold(settings, fold_yamls[k], run, resume=states[k] == "resume", console=console,
                        on_evaluation=estimate.hook(fold_started) if not estimate.said else None)
            if after_training is not None:
                after_training(run)
            seconds = _run_seconds(run)
            atomic_write_text(fold_dir / TRAINED_MARK, json.dumps({"run": str(run), "seconds": seconds}) + "\n")
            result.trained.append(k + 1)
            done_training = len(result.trained)
            left = (time.perf_counter() - started) / done_training * (len(to_train) - done_training)
            console.print(f"fold {k + 1}/{folds} trained in {_duration(time.perf_counter() - fold_started)}; "
                          f"{done_training}/{len(to_train)} trained" +
                          (f", about {_duration(left)} left" if left > 0 else ""), highlight=False, markup=False)
        _predict_held_out(run, fold_dir, held, predictions / "train", settings, conf, console)
        result.predicted.append(k + 1)

    result.val_map50_95 = {k + 1: _best_val_map(runs_dir / f"fold-{k + 1}") for k in range(folds)}
    ranked = sorted(result.val_map50_95.items(), key=lambda item: (-(item[1] if item[1] is not None else -1),
                                                                    item[0]))
    result.best_fold = ranked[0][0]
    _predict_val(runs_dir / f"fold-{result.best_fold}", result.best_fold, config.yaml_path, val_images,
                 predictions / "val", folds_dir / VAL_MARK, settings, conf, console)
    return result


_STATE_WORDS = {"done": "done, skipped", "trained": "trained, predicting its held-out images",
                "resume": "interrupted, resuming", "fresh": "to train"}


def _check_out(out: Path, config) -> Path:
    """OUT: new, empty, or a crossval directory this command wrote; never inside the dataset."""
    out = Path(os.path.realpath(out.expanduser()))
    for folder in folders_read(config, with_root=False):
        if out == folder or out.is_relative_to(folder) or folder.is_relative_to(out):
            raise DoctorError(f"--out would be written inside the dataset ({folder}): datasets are only read", out)
    if out.exists() and not out.is_dir():
        raise DoctorError("--out is a file: give a new or empty directory", out)
    if out.is_dir() and any(out.iterdir()) and not (out / STATE_FILE).is_file():
        raise DoctorError(f"--out exists and is not a crossval directory (no {STATE_FILE}): give a new or empty "
                          "directory, or the --out of the crossval to resume", out)
    files.check_run_location(out / RUNS_DIR, "fold-1", True, config)
    return out


def _refuse_shared_stems(paths: list[str], split: str, where: Path) -> None:
    """Predictions are <stem>.txt per split: two images with one stem would overwrite each other's."""
    seen: dict[str, str] = {}
    for path in paths:
        stem = Path(path).stem
        if stem in seen and seen[stem] != path:
            raise DoctorError(f"two {split} images share the name '{stem}' ({seen[stem]}, {path}): their predictions "
                              f"would both be {split}/{stem}.txt; rename one", where)
        seen[stem] = path


# Set per fold, or free to change on a resume (where and how fast it runs, not what it learns)
_NOT_COMPARED = {"train": ("data", "project", "name", "exist_ok", "device", "threads", "tensorboard",
                           "audit_report"), "data": ("workers",)}


def _state(data_yaml: Path, plan: FoldPlan, settings: TrainSettings) -> dict[str, Any]:
    compared = {part: {key: value for key, value in values.items() if key not in _NOT_COMPARED.get(part, ())}
                for part, values in settings.to_dict().items()}
    return json.loads(json.dumps({"format": STATE_FORMAT, "data": str(data_yaml), "folds": plan.folds,
                                  "seed": plan.seed, "settings": compared, "images": plan.assignment()}))


def _check_state(out: Path, state: dict[str, Any]) -> None:
    """First run: write crossval.json. A rerun: the same dataset, folds and settings, or a one-line refusal."""
    path = out / STATE_FILE
    if not path.is_file():
        atomic_write_text(path, json.dumps(state, indent=1) + "\n")
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DoctorError(f"cannot read {STATE_FILE} ({error.__class__.__name__}): use a new --out", path) from None
    for key, what in (("data", "another data.yaml"), ("folds", "another --folds"), ("seed", "another --seed")):
        if saved.get(key) != state[key]:
            raise DoctorError(f"this crossval was started with {what} ({saved.get(key)}, now {state[key]}): use a "
                              "new --out, or the same options to resume", path)
    if saved.get("images") != state["images"]:
        raise DoctorError("the train images changed since this crossval started (its folds no longer match): use a "
                          "new --out", path)
    for part, values in state["settings"].items():
        for key, value in values.items():
            before = (saved.get("settings") or {}).get(part, {}).get(key)
            if before != value:
                raise DoctorError(f"this crossval was started with other training options ({key}: {before}, now "
                                  f"{value}): use a new --out, or the same options to resume", path)


def _write_fold(fold_dir: Path, plan: FoldPlan, fold: int, names: list[str], val_list: Path) -> Path:
    """The fold's data.yaml over .txt lists of the user's images (absolute paths: labels are found beside them)."""
    atomic_write_text(fold_dir / "train.txt", "".join(f"{path}\n" for path in plan.paths_outside(fold)))
    atomic_write_text(fold_dir / "holdout.txt", "".join(f"{path}\n" for path in plan.paths(fold)))
    data = {"path": str(fold_dir), "train": str(fold_dir / "train.txt"), "val": str(val_list), "names": names}
    atomic_write_text(fold_dir / "data.yaml", yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return fold_dir / "data.yaml"


def _fold_state(fold_dir: Path, run: Path, held: list[str], predictions: Path, epochs: int) -> str:
    """done (skip), trained (predict only), resume (continue weights/last.pt) or fresh (train from the start)."""
    best = run / files.BEST_CHECKPOINT
    finished = best.is_file() and ((fold_dir / TRAINED_MARK).is_file() or (run / files.PER_CLASS_FILE).is_file())
    if finished and (fold_dir / DONE_MARK).is_file() and \
            all((predictions / "train" / f"{Path(path).stem}.txt").is_file() for path in held):
        return "done"
    if finished:
        return "trained"
    if (run / files.LAST_CHECKPOINT).is_file() and (run / files.ARGS_FILE).is_file():
        from trainer.checkpoint import load_checkpoint

        try:
            epoch = int(load_checkpoint(run / files.LAST_CHECKPOINT)["epoch"])
        except (DoctorError, KeyError, TypeError, ValueError):
            return "fresh"  # a damaged last.pt: train again
        return "trained" if epoch + 1 >= epochs and best.is_file() else "resume"
    return "fresh"


def _train_fold(settings: TrainSettings, fold_yaml: Path, run: Path, *, resume: bool, console: Console,
                on_evaluation) -> None:
    from trainer.launch import launch_training  # torch loads only when a fold trains

    if resume:
        launch_training(None, resume=run, console=console, on_evaluation=on_evaluation)
        return
    fold_settings = replace(settings, train=replace(settings.train, data=str(fold_yaml), project=str(run.parent),
                                                    name=run.name, exist_ok=True))
    launch_training(fold_settings, console=console, on_evaluation=on_evaluation)


def _predict_held_out(run: Path, fold_dir: Path, held: list[str], target: Path, settings: TrainSettings,
                      conf: float, console: Console) -> None:
    """The fold model's predictions of its held-out images, then done.json (the fold is complete)."""
    from trainer.model.inference import write_yolo_predictions
    from trainer.predict import predict_images

    predictions, _ = predict_images(run / files.BEST_CHECKPOINT, fold_dir / "holdout.txt",
                                    imgsz=settings.data.imgsz, conf=conf, iou=settings.train.iou,
                                    max_det=settings.train.max_det, batch=settings.train.batch,
                                    device=settings.train.device, warn=_warner(console))
    write_yolo_predictions(target, predictions)
    atomic_write_text(fold_dir / DONE_MARK, json.dumps({"model": str(run / files.BEST_CHECKPOINT),
                                                         "images": len(held),
                                                         "predicted": len(predictions.paths)}) + "\n")
    console.print(f"  {fold_dir.name}: {len(predictions.paths)} held-out images predicted into {target}",
                  highlight=False, markup=False)


def _predict_val(run: Path, fold: int, data_yaml: Path, val_images: list[str], target: Path, mark: Path,
                 settings: TrainSettings, conf: float, console: Console) -> None:
    """Val predicted by the best fold model (skipped when that model already wrote them all)."""
    from trainer.model.inference import write_yolo_predictions
    from trainer.predict import predict_images

    try:
        saved = json.loads(mark.read_text(encoding="utf-8")) if mark.is_file() else {}
    except (OSError, ValueError):
        saved = {}
    if saved.get("fold") == fold and all((target / f"{Path(path).stem}.txt").is_file() for path in val_images):
        return
    predictions, _ = predict_images(run / files.BEST_CHECKPOINT, data_yaml, split="val", imgsz=settings.data.imgsz,
                                    conf=conf, iou=settings.train.iou, max_det=settings.train.max_det,
                                    batch=settings.train.batch, device=settings.train.device,
                                    warn=_warner(console))
    write_yolo_predictions(target, predictions)
    atomic_write_text(mark, json.dumps({"fold": fold, "model": str(run / files.BEST_CHECKPOINT),
                                        "images": len(predictions.paths)}) + "\n")
    console.print(f"val: {len(predictions.paths)} images predicted by fold {fold}'s model (best val mAP50-95) into "
                  f"{target}", highlight=False, markup=False)


def _best_val_map(run: Path) -> float | None:
    values = [row.get("val_map50_95") for row in files.read_results(run)]
    numbers = [float(value) for value in values if isinstance(value, (int, float))]
    return max(numbers) if numbers else None


def _run_seconds(run: Path) -> float | None:
    rows = files.read_results(run)
    value = rows[-1].get("time_s") if rows else None
    return float(value) if isinstance(value, (int, float)) else None


def _trained_seconds(fold_dir: Path) -> float | None:
    try:
        value = json.loads((fold_dir / TRAINED_MARK).read_text(encoding="utf-8")).get("seconds")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def _measured_fold_seconds(settings: TrainSettings, num_classes: int, train_images: int, val_images: int) -> float:
    """A first estimate of one fold's time, before any fold trains: a few training steps of the fold's model
    at its size (trainer/throughput.py, as `doctor demo`'s ETA), times the fold's images, epochs and evaluations."""
    from trainer.config import parse_model_name
    from trainer.throughput import measure_train_images_per_s, training_seconds

    scale, _ = parse_model_name(settings.train.model)
    device = choose_device(settings.train.device).device
    images_per_s = measure_train_images_per_s(scale, num_classes, settings.data.imgsz, device)
    epochs = settings.train.epochs
    return training_seconds(images_per_s, epochs, train_images, val_images,
                            evaluations=-(-epochs // settings.train.eval_every))


class _Estimate:
    """The estimated total time, said once: from folds trained before, else at the first evaluation of the
    first fold trained now (its elapsed time plus the trainer's ETA is one fold's time)."""

    def __init__(self, console: Console, folds_to_train: int):
        self.console, self.folds_to_train, self.said = console, folds_to_train, False

    def say(self, fold_seconds: float, how: str, final: bool = True) -> None:
        self.said = final
        self.console.print(f"estimated total time: about {_duration(fold_seconds * self.folds_to_train)} "
                           f"({self.folds_to_train} folds to train, about {_duration(fold_seconds)} each, {how})",
                           highlight=False, markup=False)

    def hook(self, fold_started: float) -> Callable[[Path, dict], None]:
        def on_evaluation(run_dir: Path, progress: dict) -> None:
            if self.said or progress.get("eta_s") is None:
                return
            self.say(time.perf_counter() - fold_started + float(progress["eta_s"]),
                     f"measured on the first {progress['epoch']} epoch(s)")

        return on_evaluation


def _warner(console: Console) -> Callable[[str], None]:
    def warn(message: str) -> None:
        console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)

    return warn


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
