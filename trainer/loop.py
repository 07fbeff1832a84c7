"""The training loop: `train(settings)` goes from data.yaml to a finished run directory.

Everything is visible here: the epoch loop, the batch loop with its forward, loss, backward and optimizer
step; evaluation, logging and checkpoints are small functions it calls. Setup (data, model, optimizer,
resume) lives in trainer/setup.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from dataset_doctor.errors import DoctorError
from trainer import run_dir as files
from trainer.checkpoint import rng_states, save_checkpoint
from trainer.config import TrainSettings
from trainer.core_sharing import CoreSharing
from trainer.data.loader import set_loader_epoch
from trainer.devices import autocast
from trainer.evaluation import EvaluationResult
from trainer.finetune import active_freeze, keep_frozen_batchnorm_eval, set_frozen
from trainer.forgetting import measure_forgetting
from trainer.memory_policy import freed_memory_kept
from trainer.model.inference import evaluate_model, write_yolo_predictions
from trainer.monitor import TensorBoardLog, wants_tensorboard
from trainer.progress import EpochProgress
from trainer.setup import Run, start_run, unwrap


def train(settings: TrainSettings | None, resume: Path | None = None, console: Console | None = None,
          rank: int = 0, world_size: int = 1, progress: bool = True, run_dir: Path | None = None,
          device: torch.device | None = None,
          on_evaluation: Callable[[Path, dict[str, Any]], None] | None = None) -> Path:
    """Train a detector; returns the run directory. `resume`: continue a run directory from weights/last.pt.

    Distributed runs call this once per process (trainer/launch.py), with their rank, device and the run dir.
    The training report (report.html) is not written here: the trainer never imports reports/. The caller
    writes it, as `doctor train` does: `reports.training_report.write_training_report(run_dir)`.
    on_evaluation(run_dir, progress): called on rank 0 once before the first epoch and after every evaluation
    (results.csv and the checkpoints written), progress = {"epoch", "epochs", "eta_s"}: how `doctor train`
    keeps a live report.html without the trainer importing reports/.
    While it runs, freed memory stays in the process (trainer/memory_policy.py: no page faults per step).
    """
    with freed_memory_kept():
        return _train(settings, resume, console, rank, world_size, progress, run_dir, device, on_evaluation)


def _train(settings: TrainSettings | None, resume: Path | None, console: Console | None, rank: int,
           world_size: int, progress: bool, run_dir: Path | None, device: torch.device | None,
           on_evaluation: Callable[[Path, dict[str, Any]], None] | None) -> Path:
    run = start_run(settings, resume, console, rank, world_size, run_dir, device)
    config = run.settings.train
    log_start(run)
    accumulation = run.accumulation
    monitor = open_monitor(run)
    sharing = core_sharing(run)
    session_started, first_epoch = time.perf_counter(), run.start_epoch
    if on_evaluation is not None and run.is_main:
        on_evaluation(run.dir, {"epoch": run.start_epoch, "epochs": config.epochs, "eta_s": None})
    epoch = run.start_epoch - 1
    for epoch in range(run.start_epoch, config.epochs):
        set_loader_epoch(run.train_loader, epoch)
        frozen = apply_freeze(run, epoch)
        run.model.train()
        keep_frozen_batchnorm_eval(unwrap(run.model), frozen)
        loss_sums, images_seen, epoch_started = torch.zeros(3), 0, time.perf_counter()
        forward = run.train_forward or run.model  # --compile: compiled for training only (trainer/compiled.py)
        with EpochProgress(run.console, epoch, config.epochs, run.iterations_per_epoch,
                           enabled=progress and run.is_main) as bar:
            for step, batch in enumerate(run.train_loader):
                iteration = epoch * run.iterations_per_epoch + step
                lr = run.schedule.apply(run.optimizer, epoch, iteration)
                batch = batch.to(run.device.device, non_blocking=True)
                images = batch.images.contiguous(memory_format=torch.channels_last)  # as the model (setup.py)
                with autocast(run.device.device, run.device.amp_dtype):
                    outputs = forward(images)
                loss, items = run.loss(outputs, batch.targets)
                # A CPU-GPU sync point each step: the price of skipping a NaN step on every rank together.
                if not all_ranks_finite(run, loss):
                    skip_bad_step(run, epoch, step)
                    continue
                run.bad_steps = 0
                # DDP averages gradients over ranks; scaling by world size makes the step equal to one process
                # taking the whole --batch (the loss is already multiplied by the per-rank batch size).
                scaled = run.scaler.scale(loss * run.world_size)
                if run.train_forward is not None:  # its first call compiles the backward graph
                    run.train_forward.backward(scaled)
                else:
                    scaled.backward()
                if accumulation.steps_now(step, run.iterations_per_epoch):  # --nbs: trainer/accumulate.py
                    optimizer_step(run)
                    if run.ema is not None:
                        run.ema.update(run.model)
                sharing.tick()
                step_losses = items.detach().cpu()
                loss_sums += step_losses * len(batch)
                images_seen += len(batch)
                watch_divergence(run, step_losses.tolist(), epoch, step)
                seconds = time.perf_counter() - epoch_started
                bar.update(step, tuple((loss_sums / max(images_seen, 1)).tolist()), lr, images_seen / seconds)
        train_seconds = time.perf_counter() - epoch_started
        loss_sums, images_seen = sum_over_ranks(run, loss_sums, images_seen)

        is_last = epoch == config.epochs - 1
        val, train_subset = (evaluate_both(run) if run.is_main and ((epoch + 1) % config.eval_every == 0 or is_last)
                             else (None, None))
        if run.is_main:
            row, improved = record_epoch(run, epoch, loss_sums / max(images_seen, 1), images_seen, train_seconds, lr,
                                         val, train_subset)
            save_checkpoints(run, epoch, improved, row)  # before results.csv: a row never outlives its weights
            files.append_results_row(run.dir, row)
            if monitor is not None:
                monitor.log_epoch(row, val)
            if on_evaluation is not None and val is not None:
                per_epoch = (time.perf_counter() - session_started) / (epoch + 1 - first_epoch)
                on_evaluation(run.dir, {"epoch": epoch + 1, "epochs": config.epochs,
                                        "eta_s": per_epoch * (config.epochs - epoch - 1)})
        if decided_by_rank_zero(run, stop_early(run)):
            run.print(f"[yellow]early stop:[/] val mAP50-95 did not improve for {config.patience} evaluations "
                      f"(best at epoch {run.best_epoch + 1})")
            break
    sharing.restore()
    check_replicas_agree(run)
    if run.is_main:
        finish(run, epoch)
    if monitor is not None:
        monitor.close()
    return run.dir


def apply_freeze(run: Run, epoch: int) -> int:
    """--freeze for this epoch (unfrozen from --freeze-epochs on, also after a resume); returns frozen layers."""
    config = run.settings.train
    layers = active_freeze(run.freeze_layers, config.freeze_epochs, epoch)
    if run.freeze_layers and layers != active_freeze(run.freeze_layers, config.freeze_epochs, epoch - 1):
        run.print(f"epoch {epoch + 1}: " + (f"layers 0-{layers - 1} frozen" if layers else "every layer unfrozen"))
    set_frozen(unwrap(run.model), layers)
    return layers


def open_monitor(run: Run) -> TensorBoardLog | None:
    """TensorBoard on rank 0 when wanted (trainer/monitor.py), with the class weights and augmented batches."""
    if not run.is_main or not wants_tensorboard(run.settings.train.tensorboard):
        return None
    monitor = TensorBoardLog(run.dir)
    monitor.log_start(run.class_weights.classes, run.class_weights.weights, run.class_weights.method,
                      sorted((run.dir / files.TRAIN_BATCHES_DIR).glob("*.jpg")))
    run.print(f"TensorBoard: tensorboard --logdir {run.dir.parent}")
    return monitor


def all_ranks_finite(run: Run, loss: torch.Tensor) -> bool:
    """Whether every rank's loss is finite: ranks must skip a step together or DDP's all-reduce would hang."""
    finite = torch.isfinite(loss.detach()).float().reshape(1)
    if run.world_size > 1:
        torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
    return bool(finite.item())


def sum_over_ranks(run: Run, loss_sums: torch.Tensor, images: int) -> tuple[torch.Tensor, int]:
    """Epoch loss sums and image counts of all ranks (what results.csv reports), also a sync point per epoch."""
    if run.world_size == 1:
        return loss_sums, images
    totals = torch.cat([loss_sums, torch.tensor([float(images)])]).to(run.device.device)
    torch.distributed.all_reduce(totals)
    totals = totals.cpu()
    return totals[:3], int(totals[3].item())


def decided_by_rank_zero(run: Run, decision: bool) -> bool:
    """Rank 0's decision, on every rank (ranks that disagreed on stopping would wait for each other forever)."""
    if run.world_size == 1:
        return decision
    flag = torch.tensor([float(decision)], device=run.device.device)
    torch.distributed.broadcast(flag, src=0)
    return bool(flag.item())


def check_replicas_agree(run: Run) -> None:
    """Distributed: compare every rank's parameters (a checksum each) and record it in distributed.json.

    DDP keeps replicas identical by construction; a mismatch means a rank skipped or took a different step,
    and the checkpoint (rank 0's copy) would not be what the other ranks trained.
    """
    if run.world_size == 1:
        return
    parameters = [p.detach().double().flatten() for p in unwrap(run.model).parameters()]
    flat = torch.cat(parameters)
    positions = torch.arange(1, flat.numel() + 1, dtype=torch.float64, device=flat.device)
    checksum = torch.stack([flat.sum(), (flat * positions).sum(), flat.abs().max()])  # order-sensitive
    gathered = [torch.zeros_like(checksum) for _ in range(run.world_size)]
    torch.distributed.all_gather(gathered, checksum)
    if run.is_main:
        checksums = [g.cpu().tolist() for g in gathered]
        identical = all(c == checksums[0] for c in checksums)
        files.write_json(run.dir, files.DISTRIBUTED_FILE, {
            "world_size": run.world_size, "backend": torch.distributed.get_backend(),
            "parameter_checksums": checksums, "identical": identical})
        if not identical:
            run.print("[red]warning:[/] model replicas differ between ranks at the end of training")


def core_sharing(run: Run) -> CoreSharing:
    """Fewer torch threads while other programs use the cores (trainer/core_sharing.py); CPU training only."""
    return CoreSharing.for_device(run.device.device, run.settings.train.deterministic,
                                  log=lambda message: run.print(f"[dim]{message}[/]"))


def optimizer_step(run: Run) -> None:
    """Unscale (AMP), clip the gradient norm, step, and clear gradients."""
    clip = run.settings.train.grad_clip
    if clip > 0:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), max_norm=clip)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)


def skip_bad_step(run: Run, epoch: int, step: int) -> None:
    """A NaN/inf loss skips the step; several in a row mean training has diverged: stop with a clear message."""
    run.optimizer.zero_grad(set_to_none=True)
    run.bad_steps += 1
    run.print(f"[yellow]warning:[/] non-finite loss at epoch {epoch + 1} step {step + 1}: step skipped")
    if run.bad_steps >= run.settings.train.max_bad_steps:
        raise DoctorError(f"the loss was NaN or inf for {run.bad_steps} steps in a row (epoch {epoch + 1}): "
                          "training diverged; lower --lr0, keep --amp off, or audit the labels", run.dir)


def watch_divergence(run: Run, losses: list[float], epoch: int, step: int) -> None:
    """Warn once per run when a loss jumps 100x over its running median (trainer/divergence.py): printed, and
    kept in warnings.json for the report, since a diverging run can stay finite for thousands of steps."""
    message = run.divergence.update(losses, f"epoch {epoch + 1} step {step + 1}")
    if message is None:
        return
    run.print(f"[yellow]warning:[/] {message}")
    run.warnings.append(message)
    if run.is_main:
        files.write_json(run.dir, files.WARNINGS_FILE, run.warnings)


def evaluate_both(run: Run) -> tuple[EvaluationResult, EvaluationResult]:
    """Val and the fixed train subset, with the same model, thresholds and letterboxing."""
    config, model = run.settings.train, run.evaluation_model()
    arguments = (run.device.device, config.conf, config.iou, config.max_det, run.device.amp_dtype)
    val, _ = evaluate_model(model, run.val_loader, run.index, *arguments)
    train_subset, _ = evaluate_model(model, run.train_eval_loader, run.index, *arguments)
    return val, train_subset


def fitness(val: EvaluationResult | None) -> float:
    """What best.pt is chosen by: val mAP50-95 (NaN when no val class is measurable counts as worst)."""
    if val is None or math.isnan(val.map50_95):
        return float("-inf")
    return val.map50_95


def record_epoch(run: Run, epoch: int, losses: torch.Tensor, images: int, train_seconds: float, lr: float,
                 val: EvaluationResult | None, train_subset: EvaluationResult | None) -> tuple[dict, bool]:
    """The epoch's results.csv row; prints it and updates best / patience. Also: whether val improved."""
    row = {"epoch": epoch + 1, "time_s": round(run.elapsed_before + time.perf_counter() - run.started_at, 1),
           "lr": lr, "box_loss": float(losses[0]), "cls_loss": float(losses[1]), "dfl_loss": float(losses[2]),
           "images_per_s": images / max(train_seconds, 1e-9)}
    improved = False
    if val is not None and train_subset is not None:
        row.update(train_map50=_metric(train_subset.map50), train_map50_95=_metric(train_subset.map50_95),
                   val_map50=_metric(val.map50), val_map50_95=_metric(val.map50_95),
                   val_precision=_metric(val.mean_precision), val_recall=_metric(val.mean_recall))
        score = fitness(val)
        improved = score > run.best_fitness
        if improved:
            run.best_fitness, run.best_epoch, run.stale_evaluations = score, epoch, 0
        else:
            run.stale_evaluations += 1
        run.print(f"  val mAP50 {val.map50:.3f} mAP50-95 {val.map50_95:.3f} | train subset mAP50 "
                  f"{train_subset.map50:.3f} mAP50-95 {train_subset.map50_95:.3f}"
                  + (" [green]best[/]" if improved else ""))
    return row, improved


def save_checkpoints(run: Run, epoch: int, improved: bool, results_row: dict) -> None:
    """weights/last.pt every epoch, weights/best.pt when val improved; both atomic."""
    state = {
        "model": unwrap(run.model).state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict(),
        "epoch": epoch,
        "best_fitness": run.best_fitness,
        "best_epoch": run.best_epoch,
        "stale_evaluations": run.stale_evaluations,
        "elapsed": run.elapsed_before + time.perf_counter() - run.started_at,
        "model_config": dict(vars(unwrap(run.model).config)),
        "names": list(run.index.names),
        "class_weights": run.class_weights.weights,
        "settings": run.settings.to_dict(),
        "rng": rng_states(),
        "results_row": results_row,  # restored on resume if the process died before results.csv got it
    }
    save_checkpoint(run.dir / files.LAST_CHECKPOINT, state)
    if improved or not (run.dir / files.BEST_CHECKPOINT).exists():
        save_checkpoint(run.dir / files.BEST_CHECKPOINT, state)


def stop_early(run: Run) -> bool:
    patience = run.settings.train.patience
    return patience > 0 and run.stale_evaluations >= patience


def finish(run: Run, last_epoch: int) -> None:
    """Evaluate best.pt on val and the train subset and write per-class tables, curves and val predictions."""
    from trainer.setup import load_model_weights

    config = run.settings.train
    model, _ = load_model_weights(run.dir / files.BEST_CHECKPOINT, run.device.device)
    arguments = (run.device.device, config.conf, config.iou, config.max_det, run.device.amp_dtype)
    val, val_predictions = evaluate_model(model, run.val_loader, run.index, *arguments)
    train_subset, _ = evaluate_model(model, run.train_eval_loader, run.index, *arguments)
    rows = [{"split": split, **row} for split, result in (("train", train_subset), ("val", val))
            for row in result.per_class_rows()]
    files.write_per_class(run.dir, rows)
    files.write_json(run.dir, files.PR_CURVES_FILE, val.pr_curves_json())
    files.write_confusion(run.dir, val.confusion_labels, val.confusion)
    write_yolo_predictions(run.dir / files.PREDICTIONS_DIR / "val", val_predictions)
    if run.replay_index is not None:
        forgetting = measure_forgetting(run, model, list(run.index.names))
        files.write_json(run.dir, files.FORGETTING_FILE, forgetting)
        for row in forgetting["classes"]:
            if row["ap50_95_drop"] is not None:
                run.print(f"  base class {row['class']}: val AP50-95 {row['ap50_95_before']:.3f} before, "
                          f"{row['ap50_95_after']:.3f} after (forgetting {row['ap50_95_drop']:+.3f})")
    minutes = (run.elapsed_before + time.perf_counter() - run.started_at) / 60
    run.print(f"[bold]done[/] {last_epoch + 1} epochs in {minutes:.1f} min; best epoch {run.best_epoch + 1}: "
              f"val mAP50 {val.map50:.3f} mAP50-95 {val.map50_95:.3f} (train subset {train_subset.map50:.3f} / "
              f"{train_subset.map50_95:.3f})")
    run.print(f"run directory: [bold]{run.dir}[/]")


def log_start(run: Run) -> None:
    """Say what is about to happen, including the class weights (they change the loss: never silently)."""
    config = run.settings.train
    weights = ", ".join(f"{name} {weight:.2f}" for name, weight in zip(run.class_weights.classes,
                                                                       run.class_weights.weights))
    action = f"resuming at epoch {run.start_epoch + 1}" if run.start_epoch else "training"
    run.print(f"{action}: {config.epochs} epochs, batch {config.batch}, {run.accumulation.describe()}, "
              f"{run.iterations_per_epoch} batches/epoch, "
              f"{run.optimizer_name} lr0 {run.schedule.lr0:g}, device {run.device.device}"
              + (f" x{run.world_size}" if run.world_size > 1 else ""))
    run.print(f"class weights ({run.class_weights.method}): {weights}")
    run.print(f"sampler: {run.settings.data.sampler}"
              + (" (images drawn by their boxes' class weights; compounds with the loss weights)"
                 if run.settings.data.sampler == "balanced" else ""))
    augment = run.settings.augment
    if augment.mosaic > 0 and augment.close_mosaic >= config.epochs:
        run.print(f"note: no mosaic in this run: --close-mosaic {augment.close_mosaic} covers all {config.epochs} "
                  "epochs (mosaic stops for the last N epochs)")
    if run.freeze_layers:
        run.print(f"freeze: YOLOv8 layers 0-{run.freeze_layers - 1} frozen (weights and BatchNorm statistics)"
                  + (f" for {config.freeze_epochs} epochs" if config.freeze_epochs else " for the whole run"))
    for warning in run.class_weights.warnings:
        run.print(f"[yellow]warning:[/] {warning}")


def _metric(value: float) -> float | None:
    return None if math.isnan(value) else float(value)

