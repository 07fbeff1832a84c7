"""Training a classifier on a folder-per-class dataset: one visible `for epoch` / `for batch` loop.

The pieces are the detector's where the question is the same: the learning-rate schedule (warmup, cosine:
trainer/schedule.py), optimizer groups (trainer/optim.py), EMA (trainer/ema.py), the per-epoch samplers
(uniform or balanced, trainer/data/sampler.py), class weights (dataset_doctor/weights.py, the numbers
`doctor weights` prints), atomic checkpoints (trainer/checkpoint.py) and the run directory (trainer/run_dir.py).
The loss is cross-entropy with label smoothing, optionally class-weighted; loss weights and the balanced sampler
compound (style.md rule 6), so the run records which are on. Mixed precision on CUDA is the detector's
(trainer/devices.py: autocast in bf16 where supported, else fp16 with a GradScaler; nothing on CPU), and
`--cache ram` keeps the decoded images (trainer/data/classify_dataset.py's bases) in memory.

Distributed (DDP, started by trainer/launch.py's launch_classifier: torchrun, or one process per GPU): each of N
processes takes batch / N images per step from its stride of the same epoch sample (trainer/data/sampler.py),
DDP averages the gradients (each rank's loss is a mean, so the average is the whole batch's mean), and rank 0
alone evaluates, logs and writes the run directory while the others wait at the next step's collective.

Every epoch evaluates the (EMA) model the same way on a fixed train subset and on val (centre crop, no
augmentation): top-1, top-5, per-class precision / recall / accuracy, the confusion matrix
(trainer/evaluation/classification.py). Run directory:

    args.yaml             the ClassifyConfig
    results.csv           CLASSIFY_RESULTS_COLUMNS, one row per epoch
    metrics.json          {"task": "classify", "classes", "class_weights", "sampler", "train": ..., "val": ...}
                          (ClassificationResult.to_json of the last epoch, on the train subset and val)
    val_predictions.csv   image, true class, top-5 classes and probabilities, for the report's wrong-but-sure list
    weights/last.pt       model (EMA when on), optimizer, EMA, sampler, epoch, RNG states: --resume continues
    weights/best.pt       the model of the epoch with the best val top-1
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader

from dataset_doctor.atomic import atomic_write_text, csv_text
from dataset_doctor.dataset.classify_index import ClassifyIndex, build_classify_index
from dataset_doctor.errors import DoctorError
from dataset_doctor.weights import compute_class_weights
from trainer.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from trainer.config import CLASSIFY_ADAMW_LR, ClassifyConfig
from trainer.core_sharing import CoreSharing
from trainer.data.classify_dataset import ClassifyAugment, ClassifyDataset, fill_base_cache
from trainer.data.sampler import build_sampler
from trainer.devices import autocast, choice_for_rank, choose_device
from trainer.ema import ModelEMA
from trainer.evaluation.classification import ClassificationResult, evaluate_classification
from trainer.memory_policy import freed_memory_kept
from trainer.model.classifier import Classifier, ClassifierConfig
from trainer.optim import build_optimizer, choose_optimizer
from trainer.run_dir import ARGS_FILE, WEIGHTS_DIR, new_run_dir, write_json
from trainer.schedule import Schedule

TASK = "classify"
CLASSIFY_RESULTS_COLUMNS = ["epoch", "train_loss", "lr", "train_top1", "train_top5", "val_top1", "val_top5",
                            "seconds"]
METRICS_FILE = "metrics.json"
VAL_PREDICTIONS_FILE = "val_predictions.csv"


def train_classifier(config: ClassifyConfig, resume: str | Path | None = None, log=print, *, rank: int = 0,
                     world_size: int = 1, run_dir: Path | None = None, device: torch.device | None = None) -> Path:
    """Train (or with `resume`, a run directory or its last.pt, continue) and return the run directory.

    rank, world_size, run_dir (rank 0 made it) and device: set by trainer/launch.py for a distributed run.
    While it runs, freed memory stays in the process (trainer/memory_policy.py)."""
    with freed_memory_kept():
        return _train_classifier(config, resume, log, rank, world_size, run_dir, device)


def _train_classifier(config: ClassifyConfig, resume: str | Path | None, log, rank: int, world_size: int,
                      run_dir: Path | None, device: torch.device | None) -> Path:
    given_run_dir = run_dir
    checkpoint = None
    if resume is not None:
        resume = Path(resume)
        last = resume / WEIGHTS_DIR / "last.pt" if resume.is_dir() else resume
        checkpoint = load_checkpoint(last)
        if checkpoint.get("task") != TASK:
            raise DoctorError("not a classifier checkpoint: resume it with doctor train's detection path", last)
        config = ClassifyConfig(**checkpoint["config"])
        run_dir = last.parent.parent
    _validate(config)
    torch.manual_seed(config.seed)
    choice = choice_for_rank(device, config.amp) if device is not None else choose_device(config.device, config.amp)
    if choice.distributed and world_size == 1:
        raise DoctorError("several GPUs need the distributed launcher (doctor train handles this itself)")
    if config.batch % world_size:
        raise DoctorError(f"--batch {config.batch} does not split evenly over {world_size} processes")
    device, amp_dtype = choice.device, choice.amp_dtype
    if rank != 0:
        log = _silent
    index = build_classify_index(config.data, workers=max(config.workers, 1))
    names = list(index.names)
    train_rows, val_rows = _rows(index, "train"), _rows(index, "val")
    if not len(train_rows):
        raise DoctorError("no readable train image in a class folder", config.data)
    if checkpoint is None:
        run_dir = given_run_dir or new_run_dir(config.project, config.name, config.exist_ok)
        if rank == 0:
            atomic_write_text(run_dir / ARGS_FILE, yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))

    counts = index.counts("train")
    weights = compute_class_weights(counts, names)
    log(f"classes: {len(names)}; train {len(train_rows)} images, val {len(val_rows)}; class weights "
        f"({'on' if config.class_weights == 'auto' else 'off'}, {weights.method}): "
        + ", ".join(f"{n}={w:.2f}" for n, w in zip(names, weights.weights)) + f"; sampler {config.sampler}")
    loss_weights = torch.tensor(weights.weights, dtype=torch.float32, device=device) \
        if config.class_weights == "auto" else None

    augment = ClassifyAugment(config.imgsz, config.augment, config.crop_scale, config.fliplr,
                              config.hsv_h, config.hsv_s, config.hsv_v, config.randaugment,
                              config.randaugment_magnitude)
    cache = None
    if config.cache == "ram":
        both = [train_rows, val_rows]
        cache = fill_base_cache([p for rows in both for p in rows["path"]],
                                np.concatenate([rows[["width", "height"]].to_numpy() for rows in both]),
                                config.imgsz, config.workers, log)
    train_set = ClassifyDataset(train_rows["path"].tolist(), train_rows["class_id"], augment, config.seed, cache)
    sampler = build_sampler(config.sampler, [np.array([c]) for c in train_rows["class_id"]], weights.weights,
                            seed=config.seed, rank=rank, world_size=world_size)
    rank_batch = config.batch // world_size
    loader = DataLoader(train_set, batch_size=rank_batch, sampler=sampler, num_workers=config.workers,
                        drop_last=len(sampler) > rank_batch)
    plain = dataclasses.replace(augment, train=False)
    subset = _fixed_subset(len(train_rows), config.train_eval_images, config.seed)
    train_eval = ClassifyDataset(train_rows["path"].to_numpy()[subset].tolist(),
                                 train_rows["class_id"].to_numpy()[subset], plain, cache=cache)
    val_eval = ClassifyDataset(val_rows["path"].tolist(), val_rows["class_id"], plain, cache=cache)

    model = Classifier(ClassifierConfig(config.model, len(names), dropout=config.dropout)).to(device)
    stepped = model  # what the loop calls: the model, or its DDP wrapper (same parameters)
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        stepped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    iterations_per_epoch = len(loader)
    optimizer_name, lr0 = choose_optimizer(config.optimizer, config.epochs * iterations_per_epoch, config.lr0,
                                           adamw_lr=CLASSIFY_ADAMW_LR)
    optimizer = build_optimizer(model, optimizer_name, lr0, config.momentum, config.weight_decay)
    schedule = Schedule(lr0, config.lrf, config.epochs, iterations_per_epoch, warmup_epochs=config.warmup_epochs,
                        warmup_min_iterations=0, warmup_bias_lr=0.0, warmup_momentum=0.8,
                        momentum=config.momentum)
    ema = ModelEMA(model, decay=0.9999) if config.ema else None
    scaler = torch.amp.GradScaler("cuda", enabled=choice.needs_grad_scaler)
    if amp_dtype is not None:
        log(f"mixed precision: {str(amp_dtype).replace('torch.', '')}"
            + (" with a grad scaler" if choice.needs_grad_scaler else ""))
    start_epoch, best_top1, rows = 0, -1.0, []
    if checkpoint is not None:
        model.load_state_dict(checkpoint.get("train_model", checkpoint["model"]))
        optimizer.load_state_dict(checkpoint["optimizer"])
        if ema is not None and checkpoint.get("ema") is not None:
            ema.load_state_dict(checkpoint["ema"])
        sampler.load_state_dict(checkpoint["sampler"])
        if checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        restore_rng_states(checkpoint["rng"])
        start_epoch, best_top1, rows = checkpoint["epoch"] + 1, checkpoint["best_top1"], checkpoint["rows"]
        log(f"resuming {run_dir} at epoch {start_epoch + 1}/{config.epochs}")

    sharing = CoreSharing.for_device(device, log=log)  # fewer threads while other programs use the cores
    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        model.train()
        sampler.set_epoch(epoch)
        loss_sum = torch.zeros((), device=device)
        for batch_number, (images, targets) in enumerate(loader):
            lr = schedule.apply(optimizer, epoch, epoch * iterations_per_epoch + batch_number)
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            with autocast(device, amp_dtype):
                logits = stepped(images)
            # the loss in float32: softmax over half-precision logits loses the small probabilities
            loss = F.cross_entropy(logits.float(), targets, weight=loss_weights,
                                   label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # clip the true gradients (a no-op without a scaler)
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10.0)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update(model)
            loss_sum += loss.detach()
            sharing.tick()
        if world_size > 1:  # the epoch's loss over every rank's share, for the log
            torch.distributed.all_reduce(loss_sum)
            loss_sum /= world_size
        if rank != 0:  # rank 0 evaluates and writes; the others wait at the next step's collective
            continue
        evaluated = ema.module if ema is not None else model
        precise_batchnorm(evaluated, train_eval, config.batch, config.precise_bn_batches, device)
        train_result, _ = evaluate_dataset(evaluated, train_eval, names, config.batch, device, amp_dtype)
        val_result, val_scores = evaluate_dataset(evaluated, val_eval, names, config.batch, device, amp_dtype)
        row = {"epoch": epoch + 1, "train_loss": float(loss_sum) / max(iterations_per_epoch, 1), "lr": lr,
               "train_top1": train_result.top1, "train_top5": train_result.top5,
               "val_top1": val_result.top1 if len(val_eval) else None,
               "val_top5": val_result.top5 if len(val_eval) else None,
               "seconds": round(time.perf_counter() - started, 2)}
        rows.append(row)
        log(f"epoch {epoch + 1}/{config.epochs}: loss {row['train_loss']:.4f}, train top-1 "
            f"{train_result.top1:.3f}, val top-1 {val_result.top1:.3f}, top-5 {val_result.top5:.3f}")
        score = val_result.top1 if len(val_eval) else train_result.top1
        state = {"task": TASK, "config": dataclasses.asdict(config), "names": names, "epoch": epoch,
                 "model": evaluated.state_dict(), "optimizer": optimizer.state_dict(),
                 "ema": ema.state_dict() if ema is not None else None, "sampler": sampler.state_dict(),
                 "rng": rng_states(), "best_top1": max(best_top1, score), "rows": rows,
                 "scaler": scaler.state_dict()}
        if ema is not None:  # resume needs the live weights too; last.pt's "model" is what evaluation saw
            state["train_model"] = model.state_dict()
        _write_epoch(run_dir, rows, names, weights, config, train_result, val_result, val_eval, val_scores)
        save_checkpoint(run_dir / WEIGHTS_DIR / "last.pt", state)
        if score > best_top1:
            best_top1 = score
            save_checkpoint(run_dir / WEIGHTS_DIR / "best.pt", state)
    sharing.restore()
    if world_size > 1:  # no rank leaves (and tears the group down) while rank 0 still evaluates and writes
        torch.distributed.barrier()
    return run_dir


@torch.no_grad()
def precise_batchnorm(model: torch.nn.Module, dataset, batch: int, batches: int, device: torch.device) -> None:
    """Recompute every BatchNorm's running mean and variance with the current weights (Wu & Johnson 2021,
    "Rethinking 'Batch' in BatchNorm", section 3: precise BN, as detectron2's PreciseBN hook).

    Why: running statistics are an exponential average over steps whose weights kept changing, so early in a
    run (or in a short one) they describe an older network; chained through ~30 BatchNorm layers the lag can
    make eval-mode predictions collapse to one class while train-mode ones are right. A true average over a
    few batches of the evaluation view of train images (momentum None: cumulative) removes that lag.
    """
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not layers or batches < 1 or not len(dataset):
        return
    momenta = [layer.momentum for layer in layers]
    was_training = model.training
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    model.train()
    loader = DataLoader(dataset, batch_size=max(batch, 2), shuffle=False, drop_last=len(dataset) >= 2 * batch)
    for number, (images, _) in enumerate(loader):
        if number >= batches:
            break
        if len(images) > 1:  # a batch of one has no variance to measure
            model(images.to(device))
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    model.train(was_training)


def evaluate_dataset(model: torch.nn.Module, dataset: ClassifyDataset, names: list[str], batch: int,
                     device: torch.device, amp_dtype: torch.dtype | None = None
                     ) -> tuple[ClassificationResult, np.ndarray]:
    """Softmax scores of every image (centre crop) and the metrics on them."""
    scores = classify_scores(model, dataset, batch, device, amp_dtype)
    return evaluate_classification(scores, dataset.targets, names), scores


@torch.no_grad()
def classify_scores(model: torch.nn.Module, dataset, batch: int, device: torch.device,
                    amp_dtype: torch.dtype | None = None) -> np.ndarray:
    was_training = model.training
    model.eval()
    parts = []
    for images, _ in DataLoader(dataset, batch_size=batch, shuffle=False):
        with autocast(device, amp_dtype):
            logits = model(images.to(device))
        parts.append(logits.float().softmax(dim=1).cpu().numpy())  # CPU-GPU sync point
    model.train(was_training)
    num_classes = model.num_classes if hasattr(model, "num_classes") else 0
    return np.concatenate(parts) if parts else np.zeros((0, num_classes))


def load_classifier(path: str | Path, device: str = "cpu") -> tuple[Classifier, dict]:
    """The model of a classifier checkpoint (last.pt / best.pt) in eval mode, and the checkpoint."""
    checkpoint = load_checkpoint(path)
    if checkpoint.get("task") != TASK:
        raise DoctorError("not a classifier checkpoint", path)
    config = ClassifyConfig(**checkpoint["config"])
    model = Classifier(ClassifierConfig(config.model, len(checkpoint["names"]), dropout=config.dropout))
    model.load_state_dict(checkpoint["model"])
    return model.to(device).eval(), checkpoint


def _write_epoch(run_dir: Path, rows: list[dict], names: list[str], weights, config: ClassifyConfig,
                 train_result: ClassificationResult, val_result: ClassificationResult, val_set: ClassifyDataset,
                 val_scores: np.ndarray) -> None:
    atomic_write_text(run_dir / "results.csv", csv_text(
        CLASSIFY_RESULTS_COLUMNS, [["" if row[c] is None else row[c] for c in CLASSIFY_RESULTS_COLUMNS]
                                   for row in rows]))
    write_json(run_dir, METRICS_FILE, {
        "task": TASK, "classes": names, "class_weights": {"on": config.class_weights == "auto",
                                                          "method": weights.method, "weights": weights.weights},
        "sampler": config.sampler, "label_smoothing": config.label_smoothing,
        "train_images": int(sum(weights.instances)), "train": train_result.to_json(), "val": val_result.to_json()})
    atomic_write_text(run_dir / VAL_PREDICTIONS_FILE, top_k_csv(val_set.paths, val_scores, names, val_set.targets))


def top_k_csv(paths: list[str], scores: np.ndarray, names: list[str], targets=None, k: int = 5) -> str:
    """One row per image: path, (true class,) then the top-k classes with their probabilities, best first."""
    k = min(k, len(names))
    header = ["image", *(["true"] if targets is not None else [])]
    for rank in range(1, k + 1):
        header += [f"class{rank}", f"prob{rank}"]
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k] if len(scores) else np.zeros((0, k), np.int64)
    rows = []
    for position, path in enumerate(paths):
        row = [path, *([names[int(targets[position])]] if targets is not None else [])]
        for cls in order[position]:
            row += [names[int(cls)], f"{scores[position, cls]:.4f}"]
        rows.append(row)
    return csv_text(header, rows)


def _silent(*_) -> None:
    """The log of ranks other than 0: one process speaks."""


def _rows(index: ClassifyIndex, split: str):
    images = index.images
    return images[(images["split"] == split) & images["readable"]].reset_index(drop=True)


def _fixed_subset(count: int, size: int, seed: int) -> np.ndarray:
    """The same train images every epoch (a seeded choice), sorted."""
    if count <= size:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size, replace=False))


def _validate(config: ClassifyConfig) -> None:
    rules = [(config.epochs >= 1, "--epochs must be at least 1"), (config.batch >= 1, "--batch must be at least 1"),
             (config.imgsz >= 32, "--imgsz must be at least 32 for a classifier (stride 32)"),
             (config.class_weights in ("none", "auto"), "--class-weights must be none or auto for a classifier"),
             (config.sampler in ("uniform", "balanced"), "--sampler must be uniform or balanced"),
             (0.0 <= config.label_smoothing < 1.0, "--label-smoothing must be in [0, 1)"),
             (config.cache in ("none", "ram"), "--cache must be none or ram"),
             (config.randaugment >= 0, "--randaugment must be >= 0 (0: off)"),
             (0 <= config.randaugment_magnitude <= 10, "--randaugment-magnitude must be in 0..10")]
    for ok, message in rules:
        if not ok:
            raise DoctorError(message)
